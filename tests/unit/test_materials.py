"""A cluster's materials (clusterop.materials): Secrets checked before any manager call, and CA
files that live exactly as long as a cluster uses them (requests verifies against a path)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from typing import Any, cast

import pytest

from clusterop.errors import InvalidSpec
from clusterop.kube import Kube
from clusterop.materials import Materials
from clusterop.model import ClusterSpec, NodeKind, NodeSeen, Observed

from .fakekube import FakeKube

KEY = base64.b64encode(os.urandom(16)).decode()
PEM_A = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
PEM_B = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"


def spec(name: str = "c", **extra: Any) -> ClusterSpec:
    return ClusterSpec.parse(
        {
            "metadata": {"name": name, "namespace": "ns", "generation": 1},
            "spec": {
                "nodes": [{"name": "m1", "hostIP": "127.0.0.1", "endpoint": "https://127.0.0.1:1"}],
                "encryptionKeySecretRef": {"name": "key"},
                "credentialsSecretRef": {"name": "admin"},
                **extra,
            },
        }
    )


def kube(**cas: str) -> FakeKube:
    k = FakeKube()
    k.put_secret("ns", "admin", {"username": "admin", "password": "pw"})
    k.put_secret("ns", "key", {"encryptionKey": KEY})
    for name, pem in cas.items():
        k.put_secret("ns", name, {"ca.crt": pem})
    return k


def with_ca(secret: str, name: str = "c") -> ClusterSpec:
    return spec(name, tls={"caSecretRef": {"name": secret}})


def test_credentials_key_and_default_verification() -> None:
    m = Materials(cast(Kube, kube()), (1.0, 2.0))
    conn, key = m.load(("ns", "c"), spec())
    assert key == KEY and conn.verify is True and conn.timeout == (1.0, 2.0)
    assert conn.credentials is not None and conn.credentials.username == "admin"
    assert KEY not in repr(conn) and "pw" not in repr(conn)
    insecure, _ = m.load(("ns", "c"), spec(tls={"insecureSkipVerify": True}))
    assert insecure.verify is False


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda k: k.objects.pop(("secret", "ns", "admin")), "SecretMissing"),
        (lambda k: k.put_secret("ns", "admin", {"username": "admin", "password": ""}), "CredentialsInvalid"),
        (lambda k: k.put_secret("ns", "key", {"other": KEY}), "SecretKeyMissing"),
        (lambda k: k.put_secret("ns", "key", {"encryptionKey": "c2hvcnQ="}), "EncryptionKeyInvalid"),
        (lambda k: k.put_secret("ns", "ca", {"ca.crt": "not a pem"}), "TLSInvalid"),
    ],
)
def test_bad_materials_are_refused_with_a_reason(change: Any, reason: str) -> None:
    k = kube(ca=PEM_A)
    change(k)
    with pytest.raises(InvalidSpec) as refused:
        Materials(cast(Kube, k), (1.0, 2.0)).load(("ns", "c"), with_ca("ca"))
    assert refused.value.reason == reason
    assert KEY not in refused.value.message


def test_a_generated_key_is_created_once_when_asked() -> None:
    k = kube()
    del k.objects[("secret", "ns", "key")]
    generating = spec(encryptionKeySecretRef={"name": "key", "generate": True})
    _, key = Materials(cast(Kube, k), (1.0, 2.0)).load(("ns", "c"), generating)
    assert len(base64.b64decode(key)) == 16 and k.writes == [("secret", "key")]


def test_a_ca_file_lives_while_a_cluster_uses_it() -> None:
    m = Materials(cast(Kube, kube(ca=PEM_A, other=PEM_B)), (1.0, 2.0))
    conn, _ = m.load(("ns", "c"), with_ca("ca"))
    path = str(conn.verify)
    with open(path) as f:
        assert f.read() == PEM_A
    m.forget(("ns", "c"))
    assert not os.path.exists(path), "the cluster went away: its CA file must go too"
    conn, _ = m.load(("ns", "c"), with_ca("ca"))
    assert conn.verify == path and os.path.exists(path), "a later pass writes it again"


def test_a_shared_ca_file_stays_until_its_last_cluster_lets_go() -> None:
    m = Materials(cast(Kube, kube(ca=PEM_A)), (1.0, 2.0))
    one, _ = m.load(("ns", "one"), with_ca("ca", "one"))
    two, _ = m.load(("ns", "two"), with_ca("ca", "two"))
    assert one.verify == two.verify
    m.forget(("ns", "one"))
    assert os.path.exists(str(two.verify))
    m.forget(("ns", "two"))
    assert not os.path.exists(str(two.verify))


def test_a_changed_or_dropped_ca_removes_the_old_file() -> None:
    k = kube(ca=PEM_A)
    m = Materials(cast(Kube, k), (1.0, 2.0))
    old, _ = m.load(("ns", "c"), with_ca("ca"))
    k.put_secret("ns", "ca", {"ca.crt": PEM_B})
    new, _ = m.load(("ns", "c"), with_ca("ca"))
    assert new.verify != old.verify and not os.path.exists(str(old.verify)) and os.path.exists(str(new.verify))
    m.load(("ns", "c"), spec())  # the spec names no CA any more
    assert not os.path.exists(str(new.verify)) and m.ca_files.paths == frozenset()


def test_close_removes_every_file_and_the_folder() -> None:
    m = Materials(cast(Kube, kube(ca=PEM_A, other=PEM_B)), (1.0, 2.0))
    a, _ = m.load(("ns", "a"), with_ca("ca", "a"))
    b, _ = m.load(("ns", "b"), with_ca("other", "b"))
    folder = os.path.dirname(str(a.verify))
    assert os.path.dirname(str(b.verify)) == folder
    m.close()
    assert not os.path.exists(folder)


def test_a_config_map_ca_and_its_absence() -> None:
    k = kube()
    m = Materials(cast(Kube, k), (1.0, 2.0))
    from_map = spec(tls={"caConfigMapRef": {"name": "bundle"}})
    with pytest.raises(InvalidSpec) as refused:
        m.load(("ns", "c"), from_map)
    assert refused.value.reason == "SecretMissing"
    k.put_config_map("ns", "bundle", {"ca.crt": PEM_A})
    conn, _ = m.load(("ns", "c"), from_map)
    with open(str(conn.verify)) as f:
        assert f.read() == PEM_A
    m.close()


def test_files_are_removed_when_the_process_exits_without_close() -> None:
    script = f"""
import sys
sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.dirname(__file__)))!r})
from typing import cast
from clusterop.kube import Kube
from clusterop.materials import Materials
from tests.unit.fakekube import FakeKube
from tests.unit.test_materials import kube, with_ca, PEM_A
m = Materials(cast(Kube, kube(ca=PEM_A)), (1.0, 2.0))
conn, _ = m.load(("ns", "c"), with_ca("ca"))
print(conn.verify)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    path = done.stdout.strip()
    assert path.endswith(".pem"), done.stderr
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))


def test_credentials_the_managers_refused_are_read_afresh_next_pass() -> None:
    k = kube()
    m = Materials(cast(Kube, k), (1.0, 2.0))
    fine = Observed({"m1": NodeSeen("m1", NodeKind.MASTER)})
    m.observed(("ns", "c"), spec(), fine)
    assert k.forgotten == []
    m.observed(("ns", "c"), spec(), Observed({"m1": NodeSeen("m1", NodeKind.UNAUTHORIZED, "HTTP 401: no")}))
    assert k.forgotten == ["admin"]
