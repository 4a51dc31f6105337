"""Where the control plane's binaries come from: hack/controlplane (built or reused) or KUBEBUILDER_ASSETS."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from clusterop_dev.testbed.common import REPO_ROOT, TestBedError

CONTROLPLANE_DIR = REPO_ROOT / "hack" / "controlplane"


def control_plane_version() -> str:
    """The pinned Kubernetes version (hack/controlplane/versions.env)."""
    for line in (CONTROLPLANE_DIR / "versions.env").read_text().splitlines():
        if line.startswith("K8S_VERSION="):
            return line.split("=", 1)[1].strip()
    raise TestBedError(f"No K8S_VERSION in {CONTROLPLANE_DIR / 'versions.env'}")


def control_plane_binaries() -> Path:
    """The folder holding etcd and kube-apiserver (and usually kube-controller-manager).

    hack/controlplane/build.sh decides: it honours KUBEBUILDER_ASSETS, reuses the per-version
    cache, or builds (minutes, progress on stderr).
    """
    build = CONTROLPLANE_DIR / "build.sh"
    if not build.exists():
        assets = os.environ.get("KUBEBUILDER_ASSETS")
        if assets:
            return Path(assets)
        raise TestBedError(f"No {build} and no KUBEBUILDER_ASSETS: cannot find the control plane")
    done = subprocess.run(["bash", str(build)], stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise TestBedError(f"{build} failed (exit {done.returncode}); see its output above")
    return Path(done.stdout.strip().splitlines()[-1])
