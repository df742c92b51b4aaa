"""Shared runtime helpers for the CLI: config loading with readable errors,
bus options from config, logging, and running components until a signal."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.logging import RichHandler

from pathwatch.bus import BusOptions
from pathwatch.configfile import ConfigError, LoadedConfig, load_config
from schemas.config import NatsConfig

err_console = Console(stderr=True)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=True)],
        force=True,
    )
    logging.getLogger("nats").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def load_or_exit(path: Path | None) -> LoadedConfig:
    """Load config or print every problem (file:line:column, key path, expectation) and exit 2.

    Lines are never wrapped, so each stays one `file:line:column: ...` line.
    """
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        count = f"{len(exc.problems)} error{'s' if len(exc.problems) != 1 else ''}"
        err_console.print(f"[bold red]error:[/] {exc.source}: invalid configuration ({count})")
        for problem in [*exc.problems, *exc.warnings]:
            err_console.print(f"  {problem}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    for warning in loaded.warnings:
        err_console.print(str(warning), markup=False, highlight=False, soft_wrap=True)
    return loaded


def bus_options(nats: NatsConfig, name: str, url: str | None = None) -> BusOptions:
    """BusOptions for a component named `name`; `url` overrides `nats.url`.

    PATHWATCH_NATS_URL, PATHWATCH_NATS_USER, PATHWATCH_NATS_PASSWORD,
    PATHWATCH_NATS_TOKEN and PATHWATCH_NATS_CREDENTIALS override the config, so
    systemd credentials or Kubernetes Secrets need not be written into it.
    """
    env = os.environ
    return BusOptions.from_url(
        url or env.get("PATHWATCH_NATS_URL") or nats.url,
        name=name,
        credentials=env.get("PATHWATCH_NATS_CREDENTIALS") or nats.credentials,
        user=env.get("PATHWATCH_NATS_USER") or nats.user,
        password=env.get("PATHWATCH_NATS_PASSWORD") or nats.password,
        token=env.get("PATHWATCH_NATS_TOKEN") or nats.token,
        tls_ca=nats.tls_ca,
        tls_cert=nats.tls_cert,
        tls_key=nats.tls_key,
        replicas=nats.replicas,
    )


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` until it returns; SIGINT / SIGTERM set `stop`."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        asyncio.run(runner())
    except KeyboardInterrupt:
        sys.exit(130)
