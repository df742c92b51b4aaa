"""The route commands of `pw.cmd.route.<node>` (a durable pull consumer), for the router.

It only reports what it saw through a callback; malformed commands are counted by
reason and dropped without stopping the consumer. Path states come from
`pathwatch.bus.PathStateFollower`.
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

from pathwatch.runtime.bus import Bus
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.wire import RouteCommand

log = logging.getLogger("pathwatch.router")

#: Seconds a command fetch long-polls before asking again.
COMMAND_FETCH_TIMEOUT = 1.0


def command_consumer_name(node: str) -> str:
    """The durable consumer of a node's route commands."""
    return f"pathwatch-router-{node}"


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
                    try:
                        self._handle(message.data)
                    except Exception:  # a bug must not leave the command unacknowledged
                        self._malformed["route-command:error"] += 1
                        log.exception("route command of %s failed", self._node)
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
            self._malformed[f"route-command:{exc.reason}"] += 1
            log.debug("dropping malformed RouteCommand: %s", exc)
            return
        if command.node != self._node:
            self._malformed["route-command:wrong-node"] += 1
            return
        self._on_command(command)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
