"""`pathwatch probe-state set|get|delete`: plugin probe state through the REST API."""

from __future__ import annotations

import json as jsonlib
from typing import Annotated, Any

import typer

from pathwatch.api_client import DEFAULT_API, ApiOption, TokenOption, api_request, quote
from pathwatch.app import app, examples
from pathwatch.cliduration import duration_option
from pathwatch.commands.show import console

probe_state_app = typer.Typer(
    help="Set, get or delete the state of a plugin probe (by service + route or node + interface).",
    epilog=examples(
        "pathwatch probe-state set bgp down --service web --route r1 --ttl 300",
        "pathwatch probe-state get bgp",
    ),
    no_args_is_help=True,
)
app.add_typer(probe_state_app, name="probe-state")

ServiceOption = Annotated[str | None, typer.Option("--service", help="Service of the route.")]
RouteOption = Annotated[str | None, typer.Option("--route", help="Service-route.")]
NodeOption = Annotated[str | None, typer.Option("--node", help="Node of the interface.")]
InterfaceOption = Annotated[
    str | None, typer.Option("--interface", help="Interface: every route through it.")
]


def _where(
    service: str | None, route: str | None, node: str | None, interface: str | None
) -> dict[str, Any]:
    """The address of a probe state: the options given."""
    given = {"service": service, "route": route, "node": node, "interface": interface}
    return {name: value for name, value in given.items() if value is not None}


def _call(method: str, probe: str, api: str, token: str | None, **request: dict[str, Any]) -> Any:
    """One request to the probe's state resource (`params=` or `body=`)."""
    return api_request(method, api, f"/api/v1/probe-state/{quote(probe)}", token=token, **request)


@probe_state_app.command("set")
def probe_state_set(
    probe: Annotated[str, typer.Argument(help="Probe name.")],
    state: Annotated[str, typer.Argument(help="up or down.")],
    service: ServiceOption = None,
    route: RouteOption = None,
    node: NodeOption = None,
    interface: InterfaceOption = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (shown in reasons).")] = "",
    ttl: Annotated[
        float | None,
        typer.Option(
            "--ttl", parser=duration_option, help="Time after which the state lapses (300, 5m)."
        ),
    ] = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
) -> None:
    """Example: [bold]pathwatch probe-state set bgp down --service web --route r1 --ttl 300[/]"""
    body = _where(service, route, node, interface)
    body.update({"state": state, "reason": reason})
    if ttl is not None:
        body["ttl"] = ttl
    print(jsonlib.dumps(_call("PUT", probe, api, token, body=body), indent=2))


@probe_state_app.command(
    "get",
    epilog=examples(
        "pathwatch probe-state get bgp",
        "pathwatch probe-state get bgp --node edge-1 --interface eth0",
    ),
)
def probe_state_get(
    probe: Annotated[str, typer.Argument(help="Probe name.")],
    service: ServiceOption = None,
    route: RouteOption = None,
    node: NodeOption = None,
    interface: InterfaceOption = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
) -> None:
    """The probe's state at one address, or everywhere it is set."""
    params = _where(service, route, node, interface)
    print(jsonlib.dumps(_call("GET", probe, api, token, params=params), indent=2))


@probe_state_app.command(
    "delete",
    epilog=examples(
        "pathwatch probe-state delete bgp --service web --route r1",
        "pathwatch probe-state delete bgp",
    ),
)
def probe_state_delete(
    probe: Annotated[str, typer.Argument(help="Probe name.")],
    service: ServiceOption = None,
    route: RouteOption = None,
    node: NodeOption = None,
    interface: InterfaceOption = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
) -> None:
    """Delete the probe's state at one address, or everywhere."""
    params = _where(service, route, node, interface)
    result = _call("DELETE", probe, api, token, params=params)
    console.print(f"deleted {', '.join(result['deleted'])}")
