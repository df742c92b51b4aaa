"""`pathwatch agent`: probe the routes of one node and publish to NATS.

SIGHUP reloads the config file (rounds in flight finish under the old one; a
bad new config is reported and the old one kept); SIGTERM / SIGINT drain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from pathlib import Path
from typing import Annotated

import typer

from agents.agent import Agent
from agents.probe.icmp_engine import IcmpUnavailable
from agents.probe.registry import UnknownProbeKind
from pathwatch.app import app, examples
from pathwatch.bus import Bus
from pathwatch.configfile import ConfigError, load_config
from pathwatch.runtime import (
    LogFormatOption,
    bus_options_or_exit,
    err_console,
    load_or_exit,
    run_until_signal,
    setup_logging,
)

log = logging.getLogger("pathwatch.agent")


@app.command(
    "agent",
    epilog=examples(
        "pathwatch agent -c pathwatch.yaml --node edge-1",
        "pathwatch agent -c pathwatch.yaml --node edge-1 --nats nats://127.0.0.1:4222",
    ),
)
def agent_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="Config file (YAML or TOML).")],
    node: Annotated[
        str, typer.Option("--node", help="Probe the routes whose next-hop node is this.")
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="Agent name (default: the node name).")
    ] = None,
    nats: Annotated[
        str | None, typer.Option("--nats", help="NATS server URL(s), overriding nats.url.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    log_format: LogFormatOption = "text",
) -> None:
    """Probe this node's routes (ICMP, TCP, TLS, UDP, HTTP, link) and publish measurements."""
    setup_logging(verbose, log_format)
    loaded = load_or_exit(config)
    agent_name = name or node or socket.gethostname()
    options = bus_options_or_exit(loaded.config.nats, f"agent-{agent_name}", nats)

    async def main(stop: asyncio.Event) -> None:
        bus = await Bus.connect(options, stop)
        try:
            try:
                agent = Agent(
                    loaded.config,
                    bus,
                    agent_name=agent_name,
                    node=node,
                    config_hash=loaded.digest,
                )
            except (IcmpUnavailable, UnknownProbeKind, ValueError) as exc:
                err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
                raise typer.Exit(2) from None

            def reload() -> None:
                try:
                    fresh = load_config(config)
                    agent.reload(fresh.config, fresh.digest)
                except (ConfigError, IcmpUnavailable, UnknownProbeKind, ValueError) as exc:
                    log.error("reload refused, keeping the running config: %s", exc)

            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
            await agent.run(stop)
        finally:
            await bus.close()

    run_until_signal(main)
