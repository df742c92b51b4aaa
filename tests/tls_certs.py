"""A certificate authority and certificates made in the test, with the openssl CLI
(EC P-256, valid for a day): `make_ca` and `issue`. Tests that need them skip with
`requires_openssl` when the CLI is missing."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

requires_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl CLI")

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Pem:
    """A certificate and its private key."""

    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> Pem:
    directory.mkdir(parents=True, exist_ok=True)
    ca = Pem(directory / f"{name}.pem", directory / f"{name}-key.pem")
    _openssl(
        "req", "-x509", *_EC, "-days", "1", "-subj", f"/CN={name}",
        "-keyout", str(ca.key), "-out", str(ca.cert),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return ca


def issue(ca: Pem, name: str, san: str = "IP:127.0.0.1,DNS:localhost") -> Pem:
    """A certificate for server and client use signed by `ca`, next to it."""
    directory = ca.cert.parent
    pem = Pem(directory / f"{name}.pem", directory / f"{name}-key.pem")
    request, extensions = directory / f"{name}.csr", directory / f"{name}.ext"
    extensions.write_text(
        f"subjectAltName={san}\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "basicConstraints=CA:FALSE\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl("req", *_EC, "-subj", f"/CN={name}", "-keyout", str(pem.key), "-out", str(request))
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-CAcreateserial", "-days", "1", "-extfile", str(extensions), "-out", str(pem.cert),
    )  # fmt: skip
    return pem


def server_tls_block(server: Pem, ca: Pem) -> str:
    """nats-server `tls` block: TLS only, clients must show a certificate from `ca`."""
    return (
        "tls {\n"
        f'  cert_file: "{server.cert}"\n  key_file: "{server.key}"\n  ca_file: "{ca.cert}"\n'
        "  verify: true\n  timeout: 2\n}\n"
    )
