"""Role running for the CLI: config loading with readable errors, bus options
from config (or from the running `pathwatch up`), logging, and running a role until a
signal with a bounded stop."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from msgspec.structs import replace
from rich.console import Console

from pathwatch.logs import LogFormat, log_handler
from pathwatch.runtime.bus import BusOptions, NatsRefused, StopRequested, server_list
from pathwatch.runtime.configfile import ConfigError, LoadedConfig, load_config
from pathwatch.statedir import NoRunningUp, read_auth, read_endpoint, state_dir
from schemas.config import NatsConfig

#: Errors for the operator; never wrapped (under systemd stderr is no terminal).
err_console = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("pathwatch")

LogFormatOption = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        envvar="PATHWATCH_LOG_FORMAT",
        help="Log lines as text (dated, never wrapped off a terminal) or json (ts, level,"
        " logger, message, exception).",
    ),
]

#: Every process ends within this many seconds of SIGTERM / SIGINT (the README's promise).
STOP_DEADLINE_S = 2.0
#: A role still draining this long after the signal is cancelled (its clean-up runs then).
CANCEL_AFTER_S = 1.2


def setup_logging(verbose: bool = False, log_format: LogFormat = "text") -> None:
    """Log to stderr in `log_format` (pathwatch.logs), INFO or DEBUG with `verbose`."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        handlers=[log_handler(log_format)],
        force=True,
    )
    logging.getLogger("nats").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def load_or_exit(path: Path | None) -> LoadedConfig:
    """Load config or print every problem (file:line:column, key path, expectation) and exit 2.

    Lines are never wrapped, so each stays one `file:line:column: ...` line.
    """
    return checked_or_exit(lambda: load_config(path))


def checked_or_exit(load: Callable[[], LoadedConfig]) -> LoadedConfig:
    """`load()`, or print every problem of the config it raised ConfigError for and exit 2;
    its warnings are printed (log lines in a role)."""
    try:
        loaded = load()
    except ConfigError as exc:
        count = f"{len(exc.problems)} error{'s' if len(exc.problems) != 1 else ''}"
        err_console.print(f"[bold red]error:[/] {exc.source}: invalid configuration ({count})")
        for problem in [*exc.problems, *exc.warnings]:
            err_console.print(f"  {problem}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    for warning in loaded.warnings:
        if logging.getLogger().handlers:  # a role: its warnings are log lines (text or json)
            log.warning("%s", warning)
        else:
            err_console.print(str(warning), markup=False, highlight=False, soft_wrap=True)
    return loaded


def bus_options(nats: NatsConfig, name: str, url: str | None = None) -> BusOptions:
    """BusOptions for a component named `name`: the server is `url` (--nats), else
    PATHWATCH_NATS_URL, else `nats.url`; when that is `embedded`, the server of the
    `pathwatch up` running on the config's state directory, with its credentials (its
    `up.json` and the file it names; NoRunningUp when there is none or they cannot be
    read).

    PATHWATCH_NATS_USER, PATHWATCH_NATS_PASSWORD, PATHWATCH_NATS_TOKEN and
    PATHWATCH_NATS_CREDENTIALS override the config, so systemd credentials or
    Kubernetes Secrets need not be written into it.
    """
    env = os.environ
    server = url or env.get("PATHWATCH_NATS_URL") or nats.url
    user = env.get("PATHWATCH_NATS_USER") or nats.user
    password = env.get("PATHWATCH_NATS_PASSWORD") or nats.password
    if server == "embedded":
        endpoint = read_endpoint(state_dir(nats))
        server = endpoint.nats_url
        auth = read_auth(endpoint)
        if auth is not None:
            user, password = auth.user, auth.password
    section = replace(
        nats,
        url=server,
        credentials=env.get("PATHWATCH_NATS_CREDENTIALS") or nats.credentials,
        user=user,
        password=password,
        token=env.get("PATHWATCH_NATS_TOKEN") or nats.token,
    )
    return BusOptions(servers=server_list(server), name=name, nats=section)


def bus_options_or_exit(nats: NatsConfig, name: str, url: str | None = None) -> BusOptions:
    """`bus_options`, or say why there is no server to connect to and exit 2."""
    try:
        return bus_options(nats, name, url)
    except NoRunningUp as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` until it returns, and end the process within STOP_DEADLINE_S of
    SIGINT / SIGTERM with status 0.

    The signal sets `stop`; what is still running CANCEL_AFTER_S later (or at a second
    signal) is cancelled. StopRequested (a stop while still connecting) ends quietly;
    NatsRefused (NATS can never be used as configured) is logged and exits 1.
    SIGHUP is logged and ignored unless `main` installs its own handler (every role
    and `up` read their config again: `ConfigSource.listen_for_hup`).
    """
    try:
        asyncio.run(_supervise(main))
    except KeyboardInterrupt:  # before the loop's handlers were in place
        _exit_despite_stray_threads(130)
        sys.exit(130)
    except BaseException as exc:
        _exit_despite_stray_threads(_exit_status(exc), exc)
        raise
    _exit_despite_stray_threads(0)


async def _supervise(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def run_main() -> None:
        await main(stop)

    work = asyncio.create_task(run_main(), name="main")

    def on_stop_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("%s again: stopping now", name)
            work.cancel()
            return
        log.info("%s: stopping", name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_stop_signal, signum)
    loop.add_signal_handler(
        signal.SIGHUP, log.warning, "SIGHUP: ignored (this process does not reload its config)"
    )
    watchdog = asyncio.create_task(_cancel_when_late(work, stop))
    try:
        await work
    except StopRequested as stopped:
        log.info("stopped before %s", stopped.args[0] if stopped.args else "NATS was reached")
    except NatsRefused as exc:  # a configuration problem: say it, without a traceback
        log.error("%s", exc)
        raise typer.Exit(1) from None
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
    finally:
        watchdog.cancel()


async def _cancel_when_late(work: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Once `stop` is set, give `work` CANCEL_AFTER_S to finish, then cancel it (again
    every 0.2 s while its clean-up still waits on something)."""
    await stop.wait()
    await asyncio.wait({work}, timeout=CANCEL_AFTER_S)
    if not work.done():
        log.warning("still stopping %.1f s after the signal: cancelling the rest", CANCEL_AFTER_S)
    while not work.done():
        work.cancel()
        await asyncio.wait({work}, timeout=0.2)


def _exit_status(exc: BaseException) -> int:
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else 1
    if isinstance(exc, typer.Exit):
        return exc.exit_code
    return 1


def _exit_despite_stray_threads(
    status: int, error: BaseException | None = None, wait_s: float = 0.5
) -> None:
    """Make the interpreter's exit quick and sure.

    Its final garbage collections would scan every object of every loaded module (0.3 to
    1 s on a loaded machine, most of the 2 s promise): freezing the heap takes it out of
    their way. And Python waits for every non-daemon thread at exit; one left running
    (an unclosed aiosqlite connection's worker, say) would keep a stopped process alive
    forever: name it and end the process anyway.
    """
    gc.freeze()
    stray = [t for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]
    for thread in stray:
        thread.join(wait_s / len(stray))
    stray = [t for t in stray if t.is_alive()]
    if stray:
        log.error("threads still running at exit, ending anyway: %s", [t.name for t in stray])
        if error is not None and not isinstance(error, SystemExit | typer.Exit):
            traceback.print_exception(error)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
