"""The NATS side of the router: the path states of KV `pathwatch-paths` (snapshot, then a
watch) and the route commands of `pw.cmd.route.<node>` (a durable pull consumer).

Both only report what they saw through callbacks; malformed values are counted by
reason and dropped without stopping either consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from pathwatch.bus import Bus
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.wire import PathState, RouteCommand

log = logging.getLogger("pathwatch.router")

#: Seconds to wait for each entry of the initial KV snapshot.
SNAPSHOT_ENTRY_TIMEOUT = 5.0
#: Seconds a command fetch long-polls before asking again.
COMMAND_FETCH_TIMEOUT = 1.0


def command_consumer_name(node: str) -> str:
    """The durable consumer of a node's route commands."""
    return f"pathwatch-router-{node}"


class PathStateFollower:
    """Holds the latest PathState of every key of KV `pathwatch-paths`.

    `resync()` replaces everything with a fresh snapshot and restarts the watch;
    `on_change(key)` is called for every change after that (key None: whole snapshot);
    `on_broken()` when the watch fails and a resync is needed.
    """

    def __init__(
        self,
        bus: Bus,
        on_change: Callable[[str | None], None],
        on_broken: Callable[[], None],
        malformed: Counter[str],
    ) -> None:
        self._bus = bus
        self._on_change = on_change
        self._on_broken = on_broken
        self._malformed = malformed
        self._watcher: KeyValue.KeyWatcher | None = None
        self._task: asyncio.Task[None] | None = None
        self.states: dict[str, PathState] = {}

    async def resync(self) -> None:
        """Read the whole bucket, then follow it; raises when NATS cannot be reached."""
        await self.stop()
        kv = await self._bus.kv(subjects.KV_PATHS)
        watcher = await kv.watchall()
        self._watcher = watcher
        states: dict[str, PathState] = {}
        while True:
            entry = await watcher.updates(timeout=SNAPSHOT_ENTRY_TIMEOUT)  # type: ignore[no-untyped-call]
            if entry is None:
                break
            self._fold(states, entry)
        self.states = states
        self._on_change(None)
        self._task = asyncio.create_task(self._follow(watcher), name="router-kv-watch")

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        try:
            async for entry in watcher:
                if entry is None:
                    continue
                self._fold(self.states, entry)
                self._on_change(entry.key)
        except Exception:
            log.exception("watch of %s failed; resyncing", subjects.KV_PATHS)
            self._on_broken()

    def _fold(self, states: dict[str, PathState], entry: KeyValue.Entry) -> None:
        if entry.operation in (KV_DEL, KV_PURGE):
            states.pop(entry.key, None)
            return
        try:
            states[entry.key] = decode_message(entry.value or b"", PathState)
        except DecodeError as exc:
            self._malformed[f"path-state-{exc.reason}"] += 1
            log.warning("dropping malformed PathState %s: %s", entry.key, exc)

    async def stop(self) -> None:
        task, self._task = self._task, None
        watcher, self._watcher = self._watcher, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if watcher is not None:
            with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                await watcher.stop()  # type: ignore[no-untyped-call]


class CommandFollower:
    """Fetches RouteCommands of one node from its durable consumer and hands them over."""

    def __init__(
        self,
        bus: Bus,
        node: str,
        on_command: Callable[[RouteCommand], None],
        malformed: Counter[str],
    ) -> None:
        self._bus = bus
        self._node = node
        self._on_command = on_command
        self._malformed = malformed

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set (or cancelled); connection trouble only delays it.

        The durable consumer stays on the server, so commands sent while the router is
        away wait for it (they are only a push channel: KV remains the truth).
        """
        subscription: JetStreamContext.PullSubscription | None = None
        try:
            while not stop.is_set():
                try:
                    if subscription is None:
                        subscription = await self._subscribe()
                    messages = await subscription.fetch(batch=16, timeout=COMMAND_FETCH_TIMEOUT)
                except TimeoutError:
                    continue
                except nats.errors.Error as exc:
                    log.warning("route commands of %s: %s; retrying", self._node, exc)
                    await _sleep_unless(stop, 1.0)
                    continue
                except Exception:
                    log.exception("route commands of %s failed; retrying", self._node)
                    subscription = None
                    await _sleep_unless(stop, 1.0)
                    continue
                for message in messages:
                    self._handle(message.data)
                    with contextlib.suppress(nats.errors.Error):
                        await message.ack()
        finally:
            if subscription is not None:
                with contextlib.suppress(nats.errors.Error):
                    await subscription.unsubscribe()

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        return await self._bus.js.pull_subscribe(
            subjects.cmd_route(self._node),
            durable=command_consumer_name(self._node),
            stream=subjects.STREAM_COMMANDS,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.NEW,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30.0,
                max_deliver=5,
            ),
        )

    def _handle(self, data: bytes) -> None:
        try:
            command = decode_message(data, RouteCommand)
        except DecodeError as exc:
            self._malformed[f"route-command-{exc.reason}"] += 1
            log.warning("dropping malformed RouteCommand: %s", exc)
            return
        if command.node != self._node:
            self._malformed["route-command-wrong-node"] += 1
            return
        self._on_command(command)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
