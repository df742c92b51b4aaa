"""`pathwatch agent`: probe the routes of one node and publish to NATS.

A new config (SIGHUP for a file; every new revision with `--config-from nats`)
swaps the probe plan: rounds in flight finish under the old one; a config that
is bad, or that cannot be probed, is refused and the old one kept. SIGTERM /
SIGINT drain.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Annotated

import typer

from agents.agent import Agent
from agents.probe.icmp_engine import IcmpUnavailable
from agents.probe.registry import UnknownProbeKind
from pathwatch.app import app, examples
from pathwatch.rolecli import (
    LogFormatOption,
    bus_options_or_exit,
    err_console,
    run_until_signal,
    setup_logging,
)
from pathwatch.roleconfig import (
    ConfigFromOption,
    ConfigNameOption,
    following,
    role_config_or_exit,
)
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configstore import DEFAULT_NAME


@app.command(
    "agent",
    epilog=examples(
        "pathwatch agent -c pathwatch.yaml --node edge-1",
        "pathwatch agent -c pathwatch.yaml --node edge-1 --nats nats://127.0.0.1:4222",
        "pathwatch agent -c bootstrap.yaml --node edge-1 --config-from nats",
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
    config_from: ConfigFromOption = None,
    config_name: ConfigNameOption = DEFAULT_NAME,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    log_format: LogFormatOption = "text",
) -> None:
    """Probe this node's routes (ICMP, TCP, TLS, UDP, HTTP, link) and publish measurements."""
    setup_logging(verbose, log_format)
    role_config = role_config_or_exit(config, config_from, config_name)
    agent_name = name or node or socket.gethostname()
    options = bus_options_or_exit(role_config.nats, f"agent-{agent_name}", nats)

    async def main(stop: asyncio.Event) -> None:
        bus = await Bus.connect(options, stop)
        try:
            source = await role_config.open(bus, stop)
            live = source.live("agent")
            try:
                agent = Agent(live.config, bus, agent_name=agent_name, node=node, live=live)
            except (IcmpUnavailable, UnknownProbeKind, ValueError) as exc:
                err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
                raise typer.Exit(2) from None
            async with following(source, stop):
                await agent.run(stop)
        finally:
            await bus.close()

    run_until_signal(main)
