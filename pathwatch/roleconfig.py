"""Where a role command takes its config from (docs/fleet-config.md).

`-c FILE` is read at start (every error at once, exit 2) and again on SIGHUP. With
`--config-from nats`, or when FILE holds nothing but `nats:` (a bootstrap file: the
connection and credentials), the role takes config `--config-name` from KV
`pathwatch-config` instead: the newest good revision at start, then every new one.
Checks a role makes of its config before it starts (`precheck`) run before NATS is
reached for a file, and on the first revision for KV.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import typer

from pathwatch.rolecli import load_or_exit
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import LoadedConfig
from pathwatch.runtime.configsource import ConfigSource, FileSource, KvSource
from pathwatch.runtime.configstore import DEFAULT_NAME
from schemas.config import NatsConfig, PathwatchConfig

log = logging.getLogger("pathwatch.config")

ConfigFrom = Literal["file", "nats"]
ConfigFromOption = Annotated[
    ConfigFrom | None,
    typer.Option(
        "--config-from",
        help="file: the -c file (read again on SIGHUP); nats: KV pathwatch-config, the -c"
        " file giving only the connection. Default: nats when the file holds only `nats:`.",
    ),
]
ConfigNameOption = Annotated[
    str,
    typer.Option(
        "--config-name",
        envvar="PATHWATCH_CONFIG_NAME",
        help="The config's name (KV key) in pathwatch-config.",
    ),
]
#: A role's own checks of a config before it starts (exit with the reason when bad).
Precheck = Callable[[PathwatchConfig], None]


def only_nats(config: PathwatchConfig) -> bool:
    """Whether `config` says nothing but how to reach NATS (a bootstrap file)."""
    return msgspec.structs.replace(PathwatchConfig(), nats=config.nats) == config


@dataclass(frozen=True)
class RoleConfig:
    """The config file as given (the whole config, or the bootstrap) and where the
    config the role runs comes from."""

    path: Path | None
    loaded: LoadedConfig
    from_kv: bool
    name: str = DEFAULT_NAME

    @property
    def nats(self) -> NatsConfig:
        return self.loaded.config.nats

    def precheck(self, check: Precheck) -> None:
        """Run `check` now when the file is the config (for KV: at `open`)."""
        if not self.from_kv:
            check(self.loaded.config)

    async def open(
        self, bus: Bus, stop: asyncio.Event, check: Precheck | None = None
    ) -> ConfigSource:
        """The source, with its first revision (for KV: waits for one, then `check`s it);
        SIGHUP reads the config again from then on."""
        source: ConfigSource
        if self.from_kv:
            source = await KvSource.open(bus, self.name, stop)
            if check is not None:
                check(source.current.config)
        else:
            source = FileSource(self.path, self.loaded)
        source.listen_for_hup()
        return source


def role_config_or_exit(
    path: Path | None, config_from: ConfigFrom | None, name: str = DEFAULT_NAME
) -> RoleConfig:
    """The RoleConfig of a command line; a bad file exits 2 with every error."""
    loaded = load_or_exit(path)
    bootstrap = path is not None and only_nats(loaded.config)
    from_kv = config_from == "nats" or (config_from is None and bootstrap)
    if config_from == "file" and bootstrap:
        log.warning("%s holds only `nats:`: this role has no routes to work on", loaded.source)
    elif config_from == "nats" and not bootstrap:
        log.info("config from KV %r: only `nats:` of %s is used", name, loaded.source)
    return RoleConfig(path, loaded, from_kv, name)


@contextlib.asynccontextmanager
async def following(source: ConfigSource, stop: asyncio.Event) -> AsyncIterator[ConfigSource]:
    """Follow `source` (new revisions to its roles) while the block runs."""
    task = asyncio.create_task(source.run(stop), name="config-source")
    try:
        yield source
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await task
            except Exception:
                log.exception("following the config failed")
