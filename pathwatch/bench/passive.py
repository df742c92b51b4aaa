"""Benchmark of passive learning: sessions opened through a namespace pair vs sessions learned.

Builds a bench of two network namespaces (a near one, where clients run and
conntrack is followed, and a far one with a TCP server) joined by a veth
pair, with addresses that exist only inside them. Client processes open TCP
sessions to the far server as fast as they can (connect, then close with a
reset so no TIME_WAIT piles up); acceptor processes in the far namespace
accept and close.

Phase 1 (baseline) runs the clients alone; phase 2 runs them while one agent
process (passive source only) follows conntrack in the near namespace and
publishes to an embedded nats-server, where this process counts the passive
measurements. Reported: sessions opened per second (baseline and with the
agent), sessions learned per second, learned / opened (1.0 = nothing lost),
the agent process's CPU, messages published and kernel event overruns.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
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
from agents.nsexec import enter_netns
from pathwatch.bus import Bus, BusOptions
from pathwatch.configfile import parse_config
from pathwatch.embedded import EmbeddedNats
from pathwatch.testbed import bed_host
from schemas.wire import MeasurementBatch

#: Only inside the two namespaces this bench creates (no route out); see pathwatch.testbed.
NEAR_ADDRESS = bed_host(79, 1)
FAR_ADDRESS = bed_host(79, 2)
SERVER_PORT = 8080


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
    agent_cpu_s: float
    agent_counters: dict[str, int] = field(default_factory=dict)

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
def bench_namespaces() -> Iterator[Bench]:
    """near <-> far over one veth pair, conntrack on in near; deleted afterwards."""
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
            "  ct state new counter\n }\n}\n",
        )
        for setting in (
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


def _acceptor(far: str, listener_fd: int, stop: MpEvent) -> None:
    listener = socket.socket(fileno=listener_fd)
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            continue
        conn.close()


def _client(near: str, go: MpEvent, stop: MpEvent, results: Any) -> None:
    enter_netns(near)
    linger = struct.pack("ii", 1, 0)
    opened = failed = 0
    go.wait()
    while not stop.is_set():
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        sock.settimeout(2)
        try:
            sock.connect((FAR_ADDRESS, SERVER_PORT))
            opened += 1
        except OSError:
            failed += 1
        finally:
            sock.close()
    results.put((opened, failed))


def _far_listener(far: str) -> socket.socket:
    holder: list[socket.socket] = []

    import threading

    def body() -> None:
        enter_netns(far)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((FAR_ADDRESS, SERVER_PORT))
        sock.listen(65535)
        holder.append(sock)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return holder[0]


def run_clients(
    bench: Bench, clients: int, seconds: float, progress: Progress, label: str
) -> tuple[int, int]:
    """Open sessions from `clients` processes for `seconds`; (opened, failed connects)."""
    ctx = mp.get_context("fork")
    go, stop = ctx.Event(), ctx.Event()
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_client, args=(bench.near, go, stop, results)) for _ in range(clients)
    ]
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
    return opened, failed


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

    before = resource.getrusage(resource.RUSAGE_SELF)
    counters = asyncio.run(main())
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    results.put((cpu, counters))


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


async def _run(
    bench: Bench, clients: int, acceptors: int, seconds: float, progress: Progress
) -> PassiveFigures:
    ctx = mp.get_context("fork")
    listener = _far_listener(bench.far)
    stop_accepting = ctx.Event()
    accepting = [
        ctx.Process(target=_acceptor, args=(bench.far, listener.fileno(), stop_accepting))
        for _ in range(acceptors)
    ]
    for process in accepting:
        process.start()
    with tempfile.TemporaryDirectory() as store, EmbeddedNats(store_dir=store) as server:
        bus = await Bus.connect(BusOptions.from_url(server.url, name="bench"))
        counting = _Counting()
        await bus.nc.subscribe("pw.meas.>", cb=counting.on_msg)
        await bus.nc.flush()
        try:
            baseline, _ = await asyncio.to_thread(
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
            opened, failed = await asyncio.to_thread(
                run_clients, bench, clients, seconds, progress, "with the agent following"
            )
            drain = progress.add_task("waiting for the last rounds", total=None)
            deadline = time.monotonic() + 10
            while counting.learned < opened and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            progress.remove_task(drain)
            stop.set()
            cpu, counters = await asyncio.to_thread(results.get, True, 60)
            agent.join(10)
            await bus.nc.flush()
            await asyncio.sleep(0.3)
        finally:
            stop_accepting.set()
            for process in accepting:
                process.join(5)
            listener.close()
            await bus.close()
    return PassiveFigures(
        seconds=seconds,
        baseline_opened=baseline,
        opened=opened,
        failed_connects=failed,
        learned=counting.learned,
        outcomes=dict(counting.outcomes),
        messages=counting.messages,
        agent_cpu_s=cpu,
        agent_counters={k: v for k, v in counters.items() if k.startswith("passive_")},
    )


def run_bench(clients: int, acceptors: int, seconds: float) -> PassiveFigures:
    """Build the namespaces, run both phases, tear everything down."""
    if os.geteuid() != 0:
        raise PermissionError("pathwatch bench passive needs root (network namespaces, conntrack)")
    with bench_namespaces() as bench, Progress() as progress:
        return asyncio.run(_run(bench, clients, acceptors, seconds, progress))


def report(figures: PassiveFigures, clients: int) -> list[str]:
    counters = figures.agent_counters
    return [
        f"clients: {clients} processes, {figures.seconds:g} s per phase",
        f"baseline (no agent): {figures.baseline_rate:,.0f} sessions/s opened",
        f"with the agent:      {figures.opened_rate:,.0f} sessions/s opened"
        f" ({figures.opened_rate / figures.baseline_rate if figures.baseline_rate else 0:.2f}"
        " x baseline)",
        f"learned:             {figures.learned_rate:,.0f} sessions/s"
        f" ({figures.learned:,} of {figures.opened:,} opened, ratio {figures.learned_ratio:.4f})",
        f"outcomes:            {dict(sorted(figures.outcomes.items()))}",
        f"failed connects:     {figures.failed_connects:,}",
        f"agent CPU:           {figures.agent_cpu_s:.2f} s"
        f" ({100 * figures.agent_cpu_s / figures.seconds:.0f} % of one core over the phase)",
        f"messages published:  {figures.messages:,}"
        f" ({figures.learned / figures.messages if figures.messages else 0:,.0f}"
        " sessions per message)",
        f"conntrack events:    {counters.get('passive_events', 0):,},"
        f" overruns {counters.get('passive_overruns', 0)},"
        f" evicted {counters.get('passive_evicted', 0)}",
    ]
