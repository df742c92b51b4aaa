"""What the REST API and its status page take from the config: the token and the routes.

`ApiSettings.of(config)` works them out once per config; `CurrentSettings` holds the
ones in force and swaps them whole when a new config revision arrives (`swap`), so
a request sees either the old settings or the new ones, never a mix. The status page
follows through `listeners`. `api.listen` is read only at start, so a revision
without a token is refused while the API listens off loopback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from enforcer.route_spec import RouteSpec, route_specs
from schemas.config import PathwatchConfig
from schemas.validate import loopback_host

RouteKey = tuple[str, str]


@dataclass(frozen=True)
class ApiSettings:
    """The token, and per configured (service, route): next hop node and interface and
    probe-type (`routes`), declared probe names (`declared`), the route's spec (`specs`)."""

    token: str | None
    routes: dict[RouteKey, tuple[str, str, str]]
    declared: dict[RouteKey, frozenset[str]]
    specs: dict[RouteKey, RouteSpec]

    @classmethod
    def of(cls, config: PathwatchConfig) -> ApiSettings:
        configured = config.routes()
        return cls(
            token=config.api.token,
            routes={
                (service, route): (
                    spec.next_hop.node,
                    spec.next_hop.interface or "",
                    spec.reachability_detection.probe_type,
                )
                for service, route, _, spec in configured
            },
            declared={
                (service, route): frozenset(p.name for p in spec.reachability_detection.probes)
                for service, route, _, spec in configured
            },
            specs={(spec.service, spec.route): spec for spec in route_specs(config)},
        )


class CurrentSettings:
    """The settings in force (`now`) of an API listening on `host`; `swap` takes a new
    config's."""

    def __init__(self, config: PathwatchConfig, host: str = "127.0.0.1") -> None:
        self.now = ApiSettings.of(config)
        self.host = host
        self.listeners: list[Callable[[ApiSettings], None]] = []

    def token(self) -> str | None:
        return self.now.token

    def swap(self, config: PathwatchConfig) -> None:
        """Take `config`'s settings; ValueError (refusing it) when it has no token while
        the API listens off loopback."""
        if not config.api.token and not loopback_host(self.host):
            raise ValueError(f"the API listens on {self.host}, off loopback: a token is required")
        self.now = ApiSettings.of(config)
        for listener in self.listeners:
            listener(self.now)
