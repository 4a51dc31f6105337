"""The shared test helpers: free ports that no outgoing connection can take in the meantime."""

from __future__ import annotations

import random
import socket

import pytest

from clusterop_dev import testkit


def test_free_ports_are_distinct_below_the_ephemeral_range_and_bindable() -> None:
    low, _ = testkit._ephemeral_range()
    ports = testkit.free_ports(50) + [testkit.free_port() for _ in range(50)]
    assert len(set(ports)) == 100, "a port handed out twice"
    assert all(testkit._LOWEST <= p < low for p in ports), ports
    for p in ports[:10]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", p))


def test_a_port_in_use_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    lowest = 40000 + random.randrange(0, 15000)  # a window of 1,500 ports, 1,000 of them held
    monkeypatch.setattr(testkit, "_LOWEST", lowest)
    monkeypatch.setattr(testkit, "_ephemeral_range", lambda: (lowest + 1500, 60999))
    held = []
    try:
        for p in range(lowest, lowest + 1000):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                s.close()
                continue
            held.append(s)
        taken = {s.getsockname()[1] for s in held}
        picked = testkit.free_ports(100)
        assert len(set(picked)) == 100
        assert not taken & set(picked)
    finally:
        for s in held:
            s.close()
