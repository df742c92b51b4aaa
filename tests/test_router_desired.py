"""Desired routes and the kernel diff: pure functions of config, path states and table."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.routing.capability import effective_capabilities, has_net_admin
from agents.routing.desired import RouterMode, desired_routes, ecmp_weight
from agents.routing.plan import InstalledRoute, KernelHop, KernelRoute, plan_changes
from pathwatch.runtime.configfile import parse_config
from schemas.config import PathwatchConfig
from schemas.wire import PathState

CONFIG = """
nats: {url: "nats://127.0.0.1:4222"}
services:
  web:
    address: [192.0.2.0/24, 198.51.100.7]
    service-policy: {best-effort: true}
    service-routes:
      r1: {next-hop: {node: edge, interface: va, gateway-ip: 10.1.0.2}, cost: 10}
      r2: {next-hop: {node: edge, interface: vb, gateway-ip: 10.2.0.2}, cost: 20}
      r3: {next-hop: {node: other, interface: vc, gateway-ip: 10.3.0.2}, cost: 5}
  strict:
    address: [203.0.113.0/24]
    service-policy: {best-effort: false}
    service-routes:
      s1: {next-hop: {node: edge, interface: va}, cost: 10}
"""


@pytest.fixture
def config() -> PathwatchConfig:
    return parse_config(CONFIG).config


def down(service: str, route: str, best_effort: bool = False) -> PathState:
    return PathState(
        service=service, route=route, state="down", in_service=False, best_effort=best_effort
    )


def up(service: str, route: str) -> PathState:
    return PathState(service=service, route=route, state="up", in_service=True)


def gateways(
    config: PathwatchConfig, states: dict[str, PathState], mode: RouterMode = "ecmp"
) -> dict[str, list[tuple[str | None, int]]]:
    result = desired_routes(config, "edge", states, mode)
    return {
        prefix: [(hop.gateway, hop.weight) for hop in route.hops]
        for prefix, route in result.routes.items()
    }


def test_ecmp_weight_is_inverse_to_cost() -> None:
    assert ecmp_weight(10, 10) == 256
    assert ecmp_weight(20, 10) == 128
    assert ecmp_weight(40, 10) == 64
    assert ecmp_weight(0, 0) == 256
    assert ecmp_weight(10**9, 1) == 1


def test_unknown_routes_count_as_in_service(config: PathwatchConfig) -> None:
    routes = gateways(config, {})
    assert routes["192.0.2.0/24"] == [("10.1.0.2", 256), ("10.2.0.2", 128)]
    assert routes["198.51.100.7/32"] == [("10.1.0.2", 256), ("10.2.0.2", 128)]
    assert routes["203.0.113.0/24"] == [(None, 256)]


def test_routes_on_other_nodes_are_not_ours(config: PathwatchConfig) -> None:
    result = desired_routes(config, "other", {})
    assert {hop.gateway for hop in result.routes["192.0.2.0/24"].hops} == {"10.3.0.2"}
    assert "203.0.113.0/24" not in result.routes


def test_withdrawn_next_hop_is_left_out(config: PathwatchConfig) -> None:
    routes = gateways(config, {"web.r1": down("web", "r1"), "web.r2": up("web", "r2")})
    assert routes["192.0.2.0/24"] == [("10.2.0.2", 256)]


def test_best_mode_keeps_the_cheapest(config: PathwatchConfig) -> None:
    assert gateways(config, {}, "best")["192.0.2.0/24"] == [("10.1.0.2", 256)]
    states = {"web.r1": down("web", "r1")}
    assert gateways(config, states, "best")["192.0.2.0/24"] == [("10.2.0.2", 256)]


def test_best_effort_route_stays_when_all_are_down(config: PathwatchConfig) -> None:
    states = {
        "web.r1": down("web", "r1"),
        "web.r2": down("web", "r2", best_effort=True),
        "web.r3": down("web", "r3"),
    }
    result = desired_routes(config, "edge", states)
    hops = result.routes["192.0.2.0/24"].hops
    assert [(hop.gateway, hop.best_effort) for hop in hops] == [("10.2.0.2", True)]


def test_all_down_without_a_marked_route_falls_back_to_the_cheapest(
    config: PathwatchConfig,
) -> None:
    everything_down = {f"web.{r}": down("web", r) for r in ("r1", "r2", "r3")}
    # r3 (cost 5, node other) is the service's cheapest: edge keeps nothing for web
    assert "192.0.2.0/24" not in gateways(config, everything_down)
    assert set(desired_routes(config, "other", everything_down).routes) == {
        "192.0.2.0/24",
        "198.51.100.7/32",
    }


def test_best_effort_off_withdraws_everything(config: PathwatchConfig) -> None:
    assert "203.0.113.0/24" not in gateways(config, {"strict.s1": down("strict", "s1")})


def test_another_route_in_service_elsewhere_withdraws_ours(config: PathwatchConfig) -> None:
    states = {"web.r1": down("web", "r1"), "web.r2": down("web", "r2"), "web.r3": up("web", "r3")}
    assert "192.0.2.0/24" not in gateways(config, states)


def test_gateway_of_the_wrong_family_is_a_problem() -> None:
    config = parse_config(
        """
services:
  v6:
    address: ["2001:db8::/64"]
    service-routes:
      r1: {next-hop: {node: edge, gateway-ip: 10.1.0.2}}
"""
    ).config
    result = desired_routes(config, "edge", {})
    assert result.routes == {}
    assert any("IPv4" in problem for problem in result.problems)


def installed(prefix: str, protocol: int, *hops: KernelHop, metric: int = 0) -> InstalledRoute:
    return InstalledRoute(prefix=prefix, hops=hops, protocol=protocol, metric=metric)


def test_plan_replaces_changed_routes_and_deletes_stale_own_routes() -> None:
    wanted = {
        "192.0.2.0/24": KernelRoute(
            "192.0.2.0/24", (KernelHop(3, "10.1.0.2", 256), KernelHop(5, "10.2.0.2", 128))
        )
    }
    table = [
        installed("192.0.2.0/24", 199, KernelHop(3, "10.1.0.2", 256)),
        installed("198.51.100.0/24", 199, KernelHop(3, "10.1.0.2")),
        installed("203.0.113.0/24", 4, KernelHop(3, "10.1.0.2")),
    ]
    plan = plan_changes(wanted, table, protocol=199)
    assert [(c.action, c.prefix) for c in plan.changes] == [
        ("delete", "198.51.100.0/24"),
        ("replace", "192.0.2.0/24"),
    ]
    assert plan.conflicts == ()


def test_plan_is_empty_when_the_table_matches() -> None:
    hops = (KernelHop(None, "10.1.0.2", 256), KernelHop(5, "10.2.0.2", 128))
    wanted = {"192.0.2.0/24": KernelRoute("192.0.2.0/24", hops)}
    table = [installed("192.0.2.0/24", 199, KernelHop(3, "10.1.0.2", 256), hops[1])]
    assert plan_changes(wanted, table, protocol=199).changes == ()


def test_plan_weights_matter_only_for_multipath() -> None:
    wanted = {"192.0.2.0/24": KernelRoute("192.0.2.0/24", (KernelHop(3, "10.1.0.2", 256),))}
    table = [installed("192.0.2.0/24", 199, KernelHop(3, "10.1.0.2", 1))]
    assert plan_changes(wanted, table, protocol=199).changes == ()


def test_plan_never_overwrites_another_protocols_route() -> None:
    wanted = {"192.0.2.0/24": KernelRoute("192.0.2.0/24", (KernelHop(3, "10.1.0.2", 256),))}
    table = [installed("192.0.2.0/24", 4, KernelHop(5, "10.2.0.2"))]
    plan = plan_changes(wanted, table, protocol=199)
    assert plan.changes == ()
    assert "protocol 4" in plan.conflicts[0]


def test_capability_bits_are_read_from_cap_eff() -> None:
    assert effective_capabilities("Name:\tx\nCapEff:\t0000000000001000\n") == 1 << 12
    assert effective_capabilities("Name:\tx\n") == 0


def test_has_net_admin_reads_a_status_file(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("CapEff:\t0000000000000000\n")
    assert not has_net_admin(status)
    status.write_text("CapEff:\t000001ffffffffff\n")
    assert has_net_admin(status)
