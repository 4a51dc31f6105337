"""The real node's network namespaces leave the host as they were found (clusterop_dev.node).

`ip netns add` makes /run/netns a mount of its own on a machine where no namespace was ever
added, and that mount outlived the node: a cold CI run failed `make e2e-node`'s comparison of the
host before and after (`+ "/run/netns"` in the mounts). Here both starting states are made and the
node's network is made and removed in each; the host's snapshot must be the same after.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from clusterop_dev import node

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and ip (iproute2) for network namespaces"
)


def _netns_mount(wanted: bool) -> None:
    """Make /run/netns a mount of its own (as anyone's first `ip netns add` does) or not (as on a
    fresh machine)."""
    if wanted and not node._is_mount(node.NETNS_DIR):
        subprocess.run(["ip", "netns", "add", "clusterop-probe"], check=True)
        subprocess.run(["ip", "netns", "delete", "clusterop-probe"], check=True)
    while not wanted and node._is_mount(node.NETNS_DIR):
        subprocess.run(["umount", str(node.NETNS_DIR)], check=True)


@pytest.fixture
def quiet_netns() -> None:
    """No namespace of anyone in /run/netns, so that its mount can be made and removed here."""
    if node.NETNS_DIR.is_dir() and any(node.NETNS_DIR.iterdir()):
        pytest.skip(f"network namespaces in use here: {sorted(p.name for p in node.NETNS_DIR.iterdir())}")
    if node.NETNS_MOUNT_MARK.exists():
        pytest.skip("a node of this project runs here")


@pytest.mark.parametrize("mounted_before", [False, True], ids=["no-netns-mount-before", "netns-mount-before"])
def test_the_nodes_network_leaves_the_host_as_found(quiet_netns: None, mounted_before: bool) -> None:
    was_mounted = node._is_mount(node.NETNS_DIR)
    try:
        _netns_mount(mounted_before)
        before = node.host_snapshot()
        node._make_network()
        assert node._netns_exists(node.NETNS_CP) and node._netns_exists(node.NETNS_NODE)
        node._remove_network()
        assert node.host_snapshot() == before
        assert node._is_mount(node.NETNS_DIR) == mounted_before
        assert not node.NETNS_MOUNT_MARK.exists()
        assert node.host_leftovers() == []
    finally:
        node._remove_network()
        _netns_mount(was_mounted)  # the host as this test found it
