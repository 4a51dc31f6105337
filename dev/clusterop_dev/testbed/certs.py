"""Certificates and kubeconfigs, made with the `openssl` command in a work folder: the test bed's CA,
the apiserver's serving certificate, the admin client certificate and the service-account key."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from clusterop_dev.testbed.common import TestBedError

_EC = ("-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")


def openssl(folder: Path, *args: str) -> None:
    done = subprocess.run(["openssl", *args], cwd=folder, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TestBedError(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")


def make_certificates(folder: Path, serving_alt_names: str, admin_user: str) -> None:
    """ca.{key,crt}, serving.{key,crt} (subjectAltName: openssl syntax), admin.{key,crt} (in
    system:masters) and sa.key, all private to the user."""
    if shutil.which("openssl") is None:
        raise TestBedError("The test bed needs the openssl command to make its certificates")
    (folder / "openssl.cnf").write_text(
        "[req]\ndistinguished_name = dn\n[dn]\n"
        "[ca]\nbasicConstraints = critical,CA:TRUE\n"
        "keyUsage = critical,keyCertSign,cRLSign,digitalSignature\n"
        "subjectKeyIdentifier = hash\n"
        "[serving]\nbasicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = serverAuth\n"
        f"subjectAltName = {serving_alt_names}\nauthorityKeyIdentifier = keyid\n"
        "[client]\nbasicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = clientAuth\n"
        "authorityKeyIdentifier = keyid\n"
    )
    old_umask = os.umask(0o077)
    try:
        for key in ("ca", "serving", "admin"):
            openssl(folder, "genpkey", *_EC, "-out", f"{key}.key")
        # RSA for service-account tokens: RS256 is what every token reviewer understands.
        openssl(folder, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key")
        openssl(
            folder, "req", "-x509", "-new", "-config", "openssl.cnf", "-extensions", "ca", "-key", "ca.key",
            "-subj", "/CN=clusterop-testbed-ca", "-days", "3650", "-out", "ca.crt",
        )  # fmt: skip
        issue(folder, "serving", "/CN=kube-apiserver", "serving")
        issue(folder, "admin", f"/O=system:masters/CN={admin_user}", "client")
    finally:
        os.umask(old_umask)


def issue(folder: Path, name: str, subject: str, extensions: str) -> None:
    """NAME.crt for the key NAME.key (made when missing), signed by the folder's CA (extensions: a
    section of openssl.cnf, "serving" or "client")."""
    if not (folder / f"{name}.key").exists():
        openssl(folder, "genpkey", *_EC, "-out", f"{name}.key")
    openssl(
        folder, "req", "-new", "-config", "openssl.cnf", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr",
    )  # fmt: skip
    openssl(
        folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-set_serial", str(secrets.randbits(63)), "-days", "3650",
        "-extfile", "openssl.cnf", "-extensions", extensions, "-out", f"{name}.crt",
    )  # fmt: skip


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig(server: str, ca_pem_b64: str, user_name: str, user: Mapping[str, str]) -> str:
    # JSON is YAML: kubectl and the clients read it, and no YAML library is needed.
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": {"server": server, "certificate-authority-data": ca_pem_b64}}],
        "users": [{"name": user_name, "user": dict(user)}],
        "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": user_name}}],
        "current-context": "testbed",
        "preferences": {},
    }
    return json.dumps(config, indent=2) + "\n"


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
