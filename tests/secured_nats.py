"""A real nats-server with the shipped accounts and permissions (deploy/nats/cluster/
accounts.conf and deploy/nats/partitions.conf, unchanged), as one node on loopback.

`secured_server(directory, env)` copies deploy/nats into `directory`, adds a one-node
server file that includes the shipped accounts.conf, puts a test password for every
`$PATHWATCH_NATS_PW_...` of it into the environment (the server reads them from there)
and starts the server. `role_env(user)` is the environment a pathwatch process needs to
connect as that user; `violations(server)` lists the permission violations in its log.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from pathwatch.runtime.embedded import EmbeddedNats

DEPLOY_NATS = Path(__file__).resolve().parent.parent / "deploy" / "nats"
ACCOUNTS = DEPLOY_NATS / "cluster" / "accounts.conf"
#: What nats-server logs when it refuses a publish or a subscription of a user.
VIOLATION = re.compile(r"(Publish|Subscription|Permissions) Violation")


def password_vars() -> list[str]:
    """The password variables of accounts.conf (`AGENT_SITE_A_EDGE`, ...)."""
    return sorted(set(re.findall(r"\$PATHWATCH_NATS_PW_(\w+)", ACCOUNTS.read_text())))


def password(user: str) -> str:
    return "test-" + user.lower().replace("_", "-")


def user_var(user: str) -> str:
    return user.upper().replace("-", "_")


def role_env(user: str) -> dict[str, str]:
    """Environment variables that make a pathwatch process connect as `user`."""
    return {"PATHWATCH_NATS_USER": user, "PATHWATCH_NATS_PASSWORD": password(user_var(user))}


def secured_server(
    directory: Path, setenv: Callable[[str, str], None], extra_config: str = ""
) -> EmbeddedNats:
    """Start one nats-server with the shipped accounts; `setenv` (monkeypatch.setenv)
    puts every password into this environment, which the server inherits."""
    shutil.copytree(DEPLOY_NATS, directory / "nats")
    config = directory / "nats" / "cluster" / "single.conf"
    config.write_text(f"server_name: pw-secured-test\n{extra_config}\ninclude ./accounts.conf\n")
    for var in password_vars():
        setenv(f"PATHWATCH_NATS_PW_{var}", password(var))
    server = EmbeddedNats(store_dir=directory / "store", config_file=config)
    return server.start()


def violations(server: EmbeddedNats) -> list[str]:
    """Every permission violation line in the server's log."""
    text = server.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if VIOLATION.search(line)]
