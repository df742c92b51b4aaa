"""Benchmark of passive learning: sessions opened through a namespace pair vs sessions learned.

Builds a bench of two network namespaces (a near one, where clients run and
conntrack is followed, and a far one with a TCP server) joined by a veth
pair, with addresses that exist only inside them. Client processes open TCP
sessions to the far server as fast as they can: a blocking connect (on a
veth pair the whole handshake runs inside the connect call, so one
connection in flight per process costs no waiting), then a close with a
reset so no TIME_WAIT piles up. The far server is a listening socket with
TCP_DEFER_ACCEPT: its kernel answers every SYN, and since the client resets
before sending data no connection is ever handed to accept(), so the far
side costs no process and no socket per session. The near side, where
conntrack is followed, sees complete sessions: SYN, SYN-ACK, ACK, RST.

Conntrack in the near namespace timestamps its events
(`nf_conntrack_timestamp`) and, unless `event_mask` is off, sends only the
events the agent needs (`EVENT_MASK_RULE`, as docs/passive.md recommends).

Phase 1 (baseline) runs the clients alone; phase 2 runs them while one agent
process (passive source only) follows conntrack in the near namespace and
publishes to an embedded nats-server, where this process counts the passive
measurements. Reported: sessions opened per second (baseline and with the
agent), sessions learned per second, learned / opened (1.0 = nothing lost),
the agent process's CPU over the phase (read from /proc, so contention does
not inflate it) and per learned session, messages published and kernel event
overruns.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

import msgspec
from rich.progress import Progress

from agents.agent import Agent, AgentOptions
from agents.nsexec import enter_netns, socket_in_netns
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import EmbeddedNats
from pathwatch.testbed import bed_host
from schemas.wire import MeasurementBatch

#: Only inside the two namespaces this bench creates (no route out); see pathwatch.testbed.
NEAR_ADDRESS = bed_host(79, 1)
FAR_ADDRESS = bed_host(79, 2)
SERVER_PORT = 8080
#: The kernel-side reduction docs/passive.md recommends for busy hosts: of a TCP
#: session only NEW, ESTABLISHED (the ASSURED bit is set then) and DESTROY are sent.
EVENT_MASK_RULE = " ct event set new,assured,destroy"


@dataclass
class Bench:
    near: str
    far: str
    near_if: str


@dataclass
class PassiveFigures:
    """What one run measured."""

    seconds: float
    baseline_opened: int
    opened: int
    failed_connects: int
    learned: int
    outcomes: dict[str, int]
    messages: int
    agent_user_s: float
    agent_system_s: float
    baseline_client_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    event_mask: bool = True
    agent_counters: dict[str, int] = field(default_factory=dict)

    @property
    def agent_cpu_s(self) -> float:
        return self.agent_user_s + self.agent_system_s

    @property
    def cpu_us_per_session(self) -> float:
        return 1e6 * self.agent_cpu_s / self.learned if self.learned else 0.0

    @property
    def baseline_rate(self) -> float:
        return self.baseline_opened / self.seconds

    @property
    def opened_rate(self) -> float:
        return self.opened / self.seconds

    @property
    def learned_rate(self) -> float:
        return self.learned / self.seconds

    @property
    def learned_ratio(self) -> float:
        return self.learned / self.opened if self.opened else 0.0


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _in_ns(ns: str, *args: str, stdin: str | None = None) -> None:
    result = subprocess.run(
        ["ip", "netns", "exec", ns, *args], input=stdin, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} in {ns}: {result.stderr.strip()}")


@contextlib.contextmanager
def bench_namespaces(event_mask: bool = True) -> Iterator[Bench]:
    """near <-> far over one veth pair, conntrack on in near (events timestamped,
    and with `event_mask` only those the agent needs); deleted afterwards."""
    tag = uuid.uuid4().hex[:6]
    near, far = f"pwbn{tag}", f"pwbf{tag}"
    near_if, far_if = f"pwbn{tag}", f"pwbf{tag}"
    made: list[str] = []
    try:
        for name in (near, far):
            _ip("netns", "add", name)
            made.append(name)
            _in_ns(name, "ip", "link", "set", "lo", "up")
        _ip(
            "link",
            "add",
            near_if,
            "netns",
            near,
            "type",
            "veth",
            "peer",
            "name",
            far_if,
            "netns",
            far,
        )
        _in_ns(near, "ip", "addr", "add", f"{NEAR_ADDRESS}/24", "dev", near_if)
        _in_ns(far, "ip", "addr", "add", f"{FAR_ADDRESS}/24", "dev", far_if)
        _in_ns(near, "ip", "link", "set", near_if, "up")
        _in_ns(far, "ip", "link", "set", far_if, "up")
        _in_ns(
            near,
            "nft",
            "-f",
            "-",
            stdin="table inet pwbench {\n chain out {\n  type filter hook output priority 0;\n"
            f"  ct state new counter{EVENT_MASK_RULE if event_mask else ''}\n }}\n}}\n",
        )
        for setting in (
            "net.netfilter.nf_conntrack_timestamp=1",
            "net.netfilter.nf_conntrack_tcp_timeout_close=1",
            "net.ipv4.ip_local_port_range=10000 65000",
        ):
            _in_ns(near, "sysctl", "-qw", setting)
        _in_ns(far, "sysctl", "-qw", "net.core.somaxconn=65535")
        yield Bench(near, far, near_if)
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


# --- load processes --------------------------------------------------------------


#: sessions a client opens between two looks at the stop flag
_CLIENT_STRIDE = 64


def _client(near: str, go: MpEvent, stop: MpEvent, results: Any) -> None:
    enter_netns(near)
    linger = struct.pack("ii", 1, 0)  # close = RST, no TIME_WAIT
    connect_timeout = struct.pack("ll", 2, 0)  # a blocking connect gives up after 2 s
    address = (FAR_ADDRESS, SERVER_PORT)
    opened = failed = 0
    go.wait()
    while not stop.is_set():
        for _ in range(_CLIENT_STRIDE):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, connect_timeout)
            try:
                sock.connect(address)
                opened += 1
            except OSError:
                failed += 1
            sock.close()
    results.put((opened, failed))


def _far_listener(far: str) -> socket.socket:
    """The far server: completes handshakes, never needs accept() (see the module docstring)."""
    sock = socket_in_netns(far)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 30)
    sock.bind((FAR_ADDRESS, SERVER_PORT))
    sock.listen(65535)
    return sock


@dataclass
class ClientPhase:
    """What the clients of one phase did, and the CPU their processes used."""

    opened: int
    failed: int
    cpu_s: float


def run_clients(
    bench: Bench, clients: int, seconds: float, progress: Progress, label: str
) -> ClientPhase:
    """Open sessions from `clients` processes for `seconds`."""
    ctx = mp.get_context("fork")
    go, stop = ctx.Event(), ctx.Event()
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_client, args=(bench.near, go, stop, results)) for _ in range(clients)
    ]
    before = os.times()
    for worker in workers:
        worker.start()
    task = progress.add_task(label, total=seconds)
    started = time.monotonic()
    go.set()
    while (elapsed := time.monotonic() - started) < seconds:
        progress.update(task, completed=elapsed)
        time.sleep(0.1)
    stop.set()
    progress.update(task, completed=seconds)
    opened = failed = 0
    for _ in workers:
        got_opened, got_failed = results.get(timeout=30)
        opened += got_opened
        failed += got_failed
    for worker in workers:
        worker.join(5)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return ClientPhase(opened, failed, cpu)


# --- the agent process ------------------------------------------------------------

AGENT_CONFIG = """
passive: {{enabled: true, netns: {near}, round-interval: 1, max-batch-items: 2000}}
services:
  bench:
    address: [{far}/32]
    service-routes:
      veth:
        next-hop: {{node: bench, interface: {near_if}}}
        reachability-detection: {{probe-type: disabled}}
"""


def _wait_started(agent: Agent) -> None:
    """Block until the agent's passive source follows conntrack (a thread's job)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        source = agent.passive
        if source is not None and source.ready.is_set():
            return
        time.sleep(0.01)
    raise RuntimeError("the passive source did not start")


def _agent_process(
    bench: Bench, nats_url: str, ready: MpEvent, stop: MpEvent, results: Any
) -> None:
    config = parse_config(
        AGENT_CONFIG.format(near=bench.near, far=FAR_ADDRESS, near_if=bench.near_if)
    ).config

    async def main() -> dict[str, int]:
        bus = await Bus.connect(BusOptions.from_url(nats_url, name="bench-agent"))
        agent = Agent(
            config,
            bus,
            agent_name="bench",
            node="bench",
            options=AgentOptions(heartbeat_interval=1.0, link_netns=bench.near),
        )
        halt = asyncio.Event()
        task = asyncio.create_task(agent.run(halt))
        await asyncio.to_thread(_wait_started, agent)
        ready.set()
        await asyncio.to_thread(stop.wait)
        halt.set()
        await task
        counters = agent.heartbeat().counters
        await bus.close()
        return counters

    results.put(asyncio.run(main()))


def process_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds a process has used so far, all its threads (/proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


# --- the run ------------------------------------------------------------------------


class _Counting:
    def __init__(self) -> None:
        self.decoder = msgspec.json.Decoder(MeasurementBatch)
        self.messages = 0
        self.outcomes: Counter[str] = Counter()

    async def on_msg(self, msg: Any) -> None:
        batch = self.decoder.decode(msg.data)
        self.messages += 1
        self.outcomes.update(item.outcome for item in batch.items if item.source == "passive")

    @property
    def learned(self) -> int:
        return sum(self.outcomes.values())


async def _run(bench: Bench, clients: int, seconds: float, progress: Progress) -> PassiveFigures:
    ctx = mp.get_context("fork")
    listener = _far_listener(bench.far)
    with tempfile.TemporaryDirectory() as store, EmbeddedNats(store_dir=store) as server:
        bus = await Bus.connect(BusOptions.from_url(server.url, name="bench"))
        counting = _Counting()
        await bus.nc.subscribe("pw.meas.>", cb=counting.on_msg)
        await bus.nc.flush()
        try:
            baseline = await asyncio.to_thread(
                run_clients, bench, clients, seconds, progress, "baseline (no agent)"
            )
            ready, stop = ctx.Event(), ctx.Event()
            results = ctx.Queue()
            agent = ctx.Process(
                target=_agent_process, args=(bench, server.url, ready, stop, results)
            )
            agent.start()
            if not await asyncio.to_thread(ready.wait, 30):
                raise RuntimeError("the agent did not start following conntrack")
            assert agent.pid is not None
            user_before, system_before = process_cpu(agent.pid)
            loaded = await asyncio.to_thread(
                run_clients, bench, clients, seconds, progress, "with the agent following"
            )
            opened = loaded.opened
            drain = progress.add_task("waiting for the last rounds", total=None)
            deadline = time.monotonic() + 10
            while counting.learned < opened and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            progress.remove_task(drain)
            user_after, system_after = process_cpu(agent.pid)
            stop.set()
            counters = await asyncio.to_thread(results.get, True, 60)
            agent.join(10)
            await bus.nc.flush()
            await asyncio.sleep(0.3)
        finally:
            listener.close()
            await bus.close()
    return PassiveFigures(
        seconds=seconds,
        baseline_opened=baseline.opened,
        opened=opened,
        failed_connects=loaded.failed,
        baseline_client_cpu_s=baseline.cpu_s,
        client_cpu_s=loaded.cpu_s,
        learned=counting.learned,
        outcomes=dict(counting.outcomes),
        messages=counting.messages,
        agent_user_s=user_after - user_before,
        agent_system_s=system_after - system_before,
        agent_counters={k: v for k, v in counters.items() if k.startswith("passive_")},
    )


def run_bench(clients: int, seconds: float, *, event_mask: bool = True) -> PassiveFigures:
    """Build the namespaces, run both phases, tear everything down."""
    if os.geteuid() != 0:
        raise PermissionError("pathwatch bench passive needs root (network namespaces, conntrack)")
    with bench_namespaces(event_mask) as bench, Progress() as progress:
        figures = asyncio.run(_run(bench, clients, seconds, progress))
    figures.event_mask = event_mask
    return figures


def _per_session(cpu_s: float, sessions: int) -> float:
    return 1e6 * cpu_s / sessions if sessions else 0.0


def report(figures: PassiveFigures, clients: int) -> list[str]:
    counters = figures.agent_counters
    baseline = figures.baseline_opened
    kernel_timed = counters.get("passive_timed_by_kernel", 0)
    timed = kernel_timed + counters.get("passive_timed_on_receipt", 0)
    events = "NEW, ESTABLISHED, DESTROY only" if figures.event_mask else "all"
    return [
        f"clients: {clients} processes, {figures.seconds:g} s per phase;"
        f" conntrack events sent: {events}",
        f"baseline (no agent): {figures.baseline_rate:,.0f} sessions/s opened",
        f"with the agent:      {figures.opened_rate:,.0f} sessions/s opened"
        f" ({figures.opened_rate / figures.baseline_rate if figures.baseline_rate else 0:.2f}"
        " x baseline)",
        f"learned:             {figures.learned_rate:,.0f} sessions/s"
        f" ({figures.learned:,} of {figures.opened:,} opened, ratio {figures.learned_ratio:.4f})",
        f"outcomes:            {dict(sorted(figures.outcomes.items()))}",
        f"failed connects:     {figures.failed_connects:,}",
        f"agent CPU:           {figures.agent_cpu_s:.2f} s"
        f" ({100 * figures.agent_cpu_s / figures.seconds:.0f} % of one core over the phase;"
        f" user {figures.agent_user_s:.2f} s, system {figures.agent_system_s:.2f} s)",
        f"agent CPU / session: {figures.cpu_us_per_session:.1f} us per learned session",
        f"client CPU / session: {_per_session(figures.baseline_client_cpu_s, baseline):.1f} us"
        f" baseline, {_per_session(figures.client_cpu_s, figures.opened):.1f} us with the agent"
        " (clients, and the kernel work done on their behalf)",
        f"messages published:  {figures.messages:,}"
        f" ({figures.learned / figures.messages if figures.messages else 0:,.0f}"
        " sessions per message)",
        f"conntrack events:    {counters.get('passive_events', 0):,},"
        f" overruns {counters.get('passive_overruns', 0)},"
        f" evicted {counters.get('passive_evicted', 0)}",
        f"latency timed by:    kernel event timestamps for {kernel_timed:,} of {timed:,}"
        " established sessions",
    ]
