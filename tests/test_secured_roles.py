"""Every role under its own least-privilege user of deploy/nats/cluster/accounts.conf,
against a real nats-server with that file (one node: the accounts are the same) that
takes mutual TLS only (a CA made in the test; every client shows a certificate), each
doing its whole job, with no permission violation in the server's log.

The agent of node site-a-edge probes loopback: route web.good answers, web.bad is a TCP
port nobody listens on, so it goes down. Then the aggregators (both partitions of
partitions.conf) publish windows and show the enforcer's lease in /metrics, the enforcer
raises an alarm and commands router and healer, the router (--dry-run) takes its
command, the healer (in a namespace of the test) gets its heal command and reselects
through the enforcer's load balancer, `alarms --follow` (admin) sees the alarm, the
notifier posts it to a webhook of the test, and an operator sets a plugin probe's state
through the API (user api) and reads it back with `show service-path`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import nats.errors
import nats.js.errors
import pytest

from agents.probe.registry import ENTRY_POINT_GROUP
from agents.routing.follower import command_consumer_name
from aggregator.partition import partition_of
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.embedded import free_port
from schemas import subjects
from tests.conftest import wait_for
from tests.netns import namespaces, requires_root
from tests.processes import START_S, Process, pathwatch
from tests.secured_nats import role_env, secured_server, violations
from tests.tls_certs import Pem, issue, make_ca, requires_openssl, server_tls_block
from tests.webhook_sink import WebhookSink

pytestmark = requires_root  # the healer's routes live in a namespace of the test


@dataclass(frozen=True)
class Tls:
    """The test's CA and the client certificate every role shows."""

    ca: Pem
    client: Pem

    def config(self) -> str:
        return (
            f'tls-ca: "{self.ca.cert}", tls-cert: "{self.client.cert}",'
            f' tls-key: "{self.client.key}"'
        )

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca.cert)
        context.load_cert_chain(self.client.cert, self.client.key)
        return context


def options(url: str, user: str, tls: Tls) -> BusOptions:
    env = role_env(user)
    return BusOptions.from_url(
        url,
        user=env["PATHWATCH_NATS_USER"],
        password=env["PATHWATCH_NATS_PASSWORD"],
        tls_ca=str(tls.ca.cert),
        tls_cert=str(tls.client.cert),
        tls_key=str(tls.client.key),
    )


def write_config(
    directory: Path, url: str, tls: Tls, api_port: int, metrics_port: int, hook: str
) -> Path:
    closed = free_port()  # nobody listens there: connections are refused
    path = directory / "pathwatch.yaml"
    detection = (
        "detection-window: 2, hold-down: 60, consecutive-failures: 2, reachability-profile: default"
    )
    path.write_text(
        f'nats: {{url: "{url}", {tls.config()}}}\n'
        f"api: {{listen: 127.0.0.1:{api_port}}}\n"
        f"metrics: {{listen: 127.0.0.1:{metrics_port}}}\n"
        f"store: {{path: {directory / 'enforcer.db'}}}\n"
        f"notifiers: {{hook: {{kind: webhook, url: {hook}, secret: test-secret}}}}\n"
        "reachability-profiles:\n"
        "  default:\n"
        "    tcp:\n"
        "      high: {acceptable-error-threshold: 25}\n"
        "tcp-probe-profiles:\n"
        "  refused:\n"
        "    probe-interval: 1\n"
        "    number-of-attempts: 2\n"
        "    probe-duration: 0.5\n"
        "    probe-address: [127.0.0.1]\n"
        f"    port: {closed}\n"
        "    traffic-classes: [high]\n"
        "  answered:\n"
        "    probe-interval: 1\n"
        "    number-of-attempts: 2\n"
        "    probe-duration: 0.5\n"
        "    probe-address: [127.0.0.1]\n"
        f"    port: {api_port}\n"
        "    traffic-classes: [high]\n"
        "services:\n"
        "  web:\n"
        "    address: [127.0.0.1/32]\n"
        "    service-routes:\n"
        "      good:\n"
        "        next-hop: {node: site-a-edge, interface: lo}\n"
        "        cost: 10\n"
        f"        reachability-detection: {{{detection}, probes: [\n"
        "          {name: api, tcp-probe-profile: answered},\n"
        "          {name: bgp, plugin: example, options: {probe-address: 127.0.0.1}}]}\n"
        "      bad:\n"
        "        next-hop: {node: site-a-edge, interface: lo}\n"
        "        cost: 20\n"
        f"        reachability-detection: {{{detection}, probes: [\n"
        "          {name: tcp, tcp-probe-profile: refused}]}\n"
    )
    return path


def plugin_path(directory: Path) -> str:
    """PYTHONPATH that installs tests/plugins' example probe kind the way a distribution
    would (an entry point in the group pathwatch.probes), for the agent."""
    dist = directory / "plugins" / "pw_example_probe-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pw-example-probe\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nexample = pw_example_probe:probe_example\n"
    )
    return f"{dist.parent}:{Path(__file__).parent / 'plugins'}"


async def stop_all(processes: list[Process]) -> dict[str, int]:
    statuses: dict[str, int] = {}
    for process in processes:
        if process.running():
            process.popen.send_signal(signal.SIGTERM)
    for process in processes:
        statuses[process.name] = await process.exit_status(10)
    return statuses


@requires_openssl
async def test_every_role_works_under_its_own_user_over_mutual_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = make_ca(tmp_path / "tls", "test-ca")
    tls = Tls(ca, issue(ca, "client"))
    server = secured_server(tmp_path, monkeypatch.setenv, server_tls_block(issue(ca, "server"), ca))
    url = server.url.replace("nats://", "tls://")
    api_port, metrics_port, metrics_port_1 = free_port(), free_port(), free_port()
    hook = WebhookSink().start()
    config = str(write_config(tmp_path, url, tls, api_port, metrics_port, hook.url))
    api = f"http://127.0.0.1:{api_port}"
    processes: list[Process] = []

    def start(name: str, user: str, *args: str, **env: str) -> Process:
        process = Process.start(name, [*args, "-c", config], tmp_path, {**role_env(user), **env})
        processes.append(process)
        return process

    try:
        with namespaces("heal") as (client_ns,):
            enforcer = start("enforcer", "enforcer", "enforcer", "--instance", "e1")
            await enforcer.wait_log("enforcer e1: active")
            start(
                "aggregator-0", "aggregator", "aggregator", "--partition", "0",
                "--partitions", "2", "--store", "",
            )  # fmt: skip
            start(
                "aggregator-1", "aggregator", "aggregator", "--partition", "1",
                "--partitions", "2", "--store", "", "--metrics", f"127.0.0.1:{metrics_port_1}",
            )  # fmt: skip
            await start("api", "api", "api").wait_log("API on")  # probed by web.good
            start("router", "router-site-a-edge", "router", "--node", "site-a-edge", "--dry-run")
            healer = start(
                "healer", "healer", "healer", "--service", "web", "--route", "bad",
                "--netns", client_ns, "--json", NSM_LIVENESS_CHECK_ENABLED="false",
            )  # fmt: skip
            follow = start("alarms", "admin", "alarms", "--follow", "--json")
            start("notifier", "notifier", "notifier", "--config-from", "nats")
            # the agent takes its config from the fleet config in KV, pushed by admin
            status, _, stderr = await run("config", "push", config, env=role_env("admin"))
            assert status == 0, stderr
            start(
                "agent", "agent-site-a-edge", "agent", "--node", "site-a-edge",
                "--config-from", "nats", PYTHONPATH=plugin_path(tmp_path),
            )  # fmt: skip

            await router_acked_its_command(url, tls)
            await healer.wait_log('"heal-command"', '"reselect"')
            await follow.wait_log('"route":"bad"')
            await wait_for(
                lambda: any(r.json().get("route") == "bad" for r in hook.taken()),
                START_S,
                what="the notifier's webhook delivery of the alarm",
            )
            await set_and_show_probe_state(api)
            for listen in (f"127.0.0.1:{metrics_port}", f"127.0.0.1:{metrics_port_1}"):
                metrics = await scrape(listen)  # windows, paths, lease, alarms: all read
                assert "pathwatch_enforcer_lease_expires_timestamp_seconds{" in metrics
                assert 'pathwatch_path_in_service{route="bad",service="web"} 0.0' in metrics
                alarm = 'cause="reachability",service="web",severity="major"} 1.0'
                assert f"pathwatch_alarms_active{{{alarm}" in metrics
            bad_partition = [metrics_port, metrics_port_1][partition_of("web", "bad", 2)]
            window = 'pathwatch_window_end_timestamp_seconds{route="bad",service="web"}'

            async def window_closed() -> bool:
                # the agent's evidence takes the route down before its first window closes
                return window in await scrape(f"127.0.0.1:{bad_partition}")

            await wait_for(window_closed, START_S, what="a window of web.bad on its partition")
            statuses = await stop_all(processes)
        in_the_run = violations(server)
        refused = await forbidden_is_refused(url, tls)
        refusals = violations(server)[len(in_the_run) :]
    finally:
        for process in processes:
            process.kill()
        server.stop()
        hook.stop()
    logs = {process.name: process.log() for process in processes}
    assert statuses == dict.fromkeys(statuses, 0), logs
    assert in_the_run == [], "\n".join(in_the_run)
    for name, text in logs.items():
        assert "Traceback" not in text, f"{name}:\n{text}"
    assert refused == [True] * len(refused)
    assert len(refusals) == len(refused), refusals


async def forbidden_is_refused(url: str, tls: Tls) -> list[bool]:
    """What the users must not do, tried once each: an agent reading another role's
    replies or heartbeating for another node, the API deleting a router's consumer.
    True for each the server refused."""
    errors: list[str] = []

    async def error_cb(exc: Exception) -> None:
        errors.append(str(exc).lower())

    env = role_env("agent-site-a-edge")
    agent = await nats.connect(
        url, user=env["PATHWATCH_NATS_USER"], password=env["PATHWATCH_NATS_PASSWORD"],
        error_cb=error_cb, tls=tls.context(),
    )  # fmt: skip
    try:
        await agent.subscribe("_INBOX_router-site-a-edge.>")
        await agent.publish(subjects.heartbeat("site-b-edge", "site-b-edge"), b"{}")
        await agent.flush()
        await wait_for(lambda: len(errors) == 2, timeout=5, what="the agent's two refusals")
    finally:
        await agent.close()
    api = await Bus.connect(options(url, "api", tls))
    admin = await Bus.connect(options(url, "admin", tls))
    consumer = command_consumer_name("site-a-edge")
    try:
        with contextlib.suppress(nats.errors.TimeoutError):
            await api.nc.jetstream(timeout=1).delete_consumer(subjects.STREAM_COMMANDS, consumer)
        await admin.js.consumer_info(subjects.STREAM_COMMANDS, consumer)  # still there
    finally:
        await api.close()
        await admin.close()
    return [
        any('subscription to "_inbox_router-site-a-edge.>"' in e for e in errors),
        any('publish to "pw.agent.hb.site-b-edge.site-b-edge"' in e for e in errors),
        True,  # the consumer survived the API's attempt
    ]


async def router_acked_its_command(url: str, tls: Tls) -> None:
    """The router pulled and acknowledged web.bad's withdraw from its durable consumer
    (as an operator sees it with the admin user). It may then take KV's newer state
    over the command, so its log need not name the command."""
    admin = await Bus.connect(options(url, "admin", tls))
    try:

        async def acked() -> bool:
            try:
                info = await admin.js.consumer_info(
                    subjects.STREAM_COMMANDS, command_consumer_name("site-a-edge")
                )
            except nats.js.errors.NotFoundError:
                return False
            return info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= 1

        await wait_for(acked, timeout=START_S, what="the router's ack of its route command")
    finally:
        await admin.close()


async def set_and_show_probe_state(api: str) -> None:
    """An operator sets the state of plugin probe bgp of web.good through the API (which
    writes KV as user api) and `show service-path` shows the enforcer took it."""
    status, _, stderr = await run(
        "probe-state", "set", "bgp", "up", "--service", "web", "--route", "good", "--api", api
    )
    assert status == 0, stderr

    async def bgp_up() -> bool:
        status, stdout, _ = await run(
            "show", "service-path", "--service", "web", "--route", "good", "--json", "--api", api
        )
        if status != 0:
            return False
        probes = json.loads(stdout)[0]["probes"]
        return any(p["name"] == "bgp" and p["state"] == "up" for p in probes)

    await wait_for(bgp_up, timeout=30, interval=0.5, what="probe bgp up in show service-path")


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run `pathwatch *args` to its end (with `env` added to the environment):
    (status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *pathwatch(*args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), START_S)
    return process.returncode or 0, stdout.decode(), stderr.decode()


async def scrape(listen: str) -> str:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{listen}/metrics", timeout=5)
    response.raise_for_status()
    return response.text
