"""A role that cannot trust the NATS server's certificate, or whose own certificate the
server refuses, exits 1 at once with one line naming the server and the certificate
problem, not a traceback and not endless retries (a real TLS-only nats-server with a CA
made in the test; every role working over mutual TLS is in tests/test_secured_roles.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pathwatch.runtime.embedded import EmbeddedNats
from tests.processes import START_S, Process
from tests.tls_certs import Pem, issue, make_ca, requires_openssl, server_tls_block

pytestmark = requires_openssl


@dataclass(frozen=True)
class TlsBed:
    server: EmbeddedNats
    ca: Pem
    client: Pem
    other_ca: Pem

    @property
    def url(self) -> str:
        return self.server.url.replace("nats://", "tls://")


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[TlsBed]:
    ca, other_ca = make_ca(tmp_path / "tls", "ca"), make_ca(tmp_path / "tls", "other-ca")
    config = tmp_path / "tls.conf"
    config.write_text(server_tls_block(issue(ca, "server"), ca))
    with EmbeddedNats(store_dir=tmp_path / "nats", config_file=config) as server:
        yield TlsBed(server, ca, issue(ca, "client"), other_ca)


def role_config(directory: Path, url: str, ca: Path, client: Pem) -> Path:
    path = directory / "pathwatch.yaml"
    path.write_text(
        f'nats: {{url: "{url}", tls-ca: "{ca}", tls-cert: "{client.cert}",'
        f' tls-key: "{client.key}"}}\n'
    )
    return path


async def exit_with(process: Process, *texts: str) -> None:
    """`process` ends by itself with status 1, its last line the error naming `texts`."""
    assert await process.exit_status(START_S) == 1, process.log()
    log = process.log()
    assert all(text in log.splitlines()[-1] for text in texts), log
    assert "Traceback" not in log, log


async def test_a_server_certificate_from_another_ca_is_refused_clearly(
    bed: TlsBed, tmp_path: Path
) -> None:
    config = role_config(tmp_path, bed.url, bed.other_ca.cert, bed.client)
    aggregator = Process.start(
        "aggregator", ["aggregator", "-c", str(config), "--store", "", "--metrics", ""], tmp_path
    )
    await exit_with(
        aggregator,
        f"TLS to NATS server {bed.url}: its certificate is not trusted",
        "unable to get local issuer certificate",
        f"tls-ca {bed.other_ca.cert}",
    )


async def test_a_client_certificate_from_another_ca_is_refused_clearly(
    bed: TlsBed, tmp_path: Path
) -> None:
    stranger = issue(bed.other_ca, "stranger")
    config = role_config(tmp_path, bed.url, bed.ca.cert, stranger)
    router = Process.start(
        "router", ["router", "-c", str(config), "--node", "n1", "--dry-run"], tmp_path
    )
    await exit_with(router, f"TLS to NATS server {bed.url}: it refused this client's certificate")
