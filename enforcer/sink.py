"""Where the engine's outputs go: KV, JetStream and SQLite when active, a buffer when standby.

Outputs are queued and written in order by one task. A standby keeps the
messages it computed in the last `BUFFER_SECONDS` (shorter than the streams'
two-minute de-duplication window); on takeover it publishes them all with
their deterministic `Nats-Msg-Id`, so whatever the old active had already
published is dropped by JetStream and whatever it had not is not lost.
"""

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable

import msgspec
from nats.js.kv import KeyValue

from enforcer.lease import Lease
from enforcer.messages import Outputs, Publication
from enforcer.store import EnforcerStore
from pathwatch.runtime.bus import Bus
from schemas import subjects
from schemas.fit import fit
from schemas.limits import PAYLOAD_HEADROOM_BYTES
from schemas.wire import Alarm, PathEvent, PathState

log = logging.getLogger("pathwatch.enforcer.sink")

BUFFER_SECONDS = 100.0
#: KV puts awaited together (each waits for its JetStream acknowledgement).
PUT_CONCURRENCY = 128


class OutputSink:
    """Serialises writes; publishes only while the lease is held."""

    def __init__(
        self,
        bus: Bus,
        paths: KeyValue,
        probes: KeyValue,
        store: EnforcerStore | None,
        lease: Lease,
        dropped: Counter[str] | None = None,
        stamp: Callable[[PathState], PathState] | None = None,
    ) -> None:
        self.bus = bus
        self.paths = paths
        self.probes = probes
        self.store = store
        self.lease = lease
        self.queue: asyncio.Queue[Outputs | list[PathState]] = asyncio.Queue()
        self.buffer: deque[tuple[float, Publication]] = deque()
        self.published = 0
        self.failures = 0
        #: outputs trimmed to fit or not written, by `output:<reason>`
        self.dropped: Counter[str] = Counter() if dropped is None else dropped
        #: adds what the engine does not know to a PathState before it is written
        #: (the replica whose window was judged: `WindowChoice.stamp`)
        self.stamp = stamp or (lambda state: state)

    def _fit(self, message: msgspec.Struct, kind: str) -> bytes | None:
        """The JSON of `message`, trimmed to fit the server's max payload (counted)."""
        data, trimmed = fit(message, self.bus.nc.max_payload - PAYLOAD_HEADROOM_BYTES)
        if trimmed:
            self.dropped[f"output-{kind}:{'trimmed' if data is not None else 'too-big'}"] += 1
        return data

    async def _put(self, key: str, state: PathState) -> None:
        data = self._fit(state, "path-state")
        if data is None:
            return
        try:
            await self.paths.put(key, data)
        except Exception as exc:
            self.failures += 1
            log.warning("cannot write path state %s: %s", key, exc)

    def submit(self, outputs: Outputs) -> None:
        if (
            outputs.paths
            or outputs.publications
            or outputs.expired_probe_keys
            or outputs.deleted_paths
        ):
            self.queue.put_nowait(outputs)

    def takeover(self, states: list[PathState]) -> None:
        """Became active: write every current state, then flush the standby buffer."""
        flush = Outputs(publications=[pub for _, pub in self.buffer])
        self.buffer.clear()
        self.queue.put_nowait(states)
        self.queue.put_nowait(flush)

    async def run(self, stop: asyncio.Event) -> None:
        while not (stop.is_set() and self.queue.empty()):
            try:
                item = await asyncio.wait_for(self.queue.get(), timeout=0.25)
            except TimeoutError:
                continue
            try:
                if isinstance(item, list):
                    await self._put_states(item)
                else:
                    await self._write(item)
            except Exception:
                self.failures += 1
                log.exception("writing enforcer outputs failed")

    async def _put_states(self, states: list[PathState]) -> None:
        """Write PathStates to KV, `PUT_CONCURRENCY` puts in flight at a time.

        A route listed twice keeps only its last state, so concurrent puts of one
        key can never land out of order."""
        stamp = self.stamp
        latest = {subjects.path_key(state.service, state.route): stamp(state) for state in states}
        items = list(latest.items())
        for start in range(0, len(items), PUT_CONCURRENCY):
            await asyncio.gather(
                *(self._put(key, state) for key, state in items[start : start + PUT_CONCURRENCY])
            )

    async def _write(self, outputs: Outputs) -> None:
        if not self.lease.held:
            now = time.monotonic()
            self.buffer.extend((now, pub) for pub in outputs.publications)
            while self.buffer and self.buffer[0][0] < now - BUFFER_SECONDS:
                self.buffer.popleft()
            return
        await self._put_states(outputs.paths)
        for publication in outputs.publications:
            try:
                await self._publish(publication)
            except Exception as exc:
                self.failures += 1
                log.warning("cannot publish on %s: %s", publication.subject, exc)
        for key in outputs.expired_probe_keys:
            try:
                await self.probes.delete(key)
            except Exception as exc:
                log.debug("deleting expired probe state %s: %s", key, exc)
        for key in outputs.deleted_paths:
            try:
                await self.paths.delete(key)
            except Exception as exc:
                self.failures += 1
                log.warning("cannot delete the path state of removed route %s: %s", key, exc)

    async def _publish(self, publication: Publication) -> None:
        message = publication.message
        store = self.store
        if (
            isinstance(message, Alarm)
            and store is not None
            # an update goes out while its alarm is not cleared; a raise or clear once
            and await store.has_alarm(
                message.id, "cleared" if publication.update else message.status
            )
        ):
            return
        data = self._fit(message, type(message).__name__.lower())
        if data is None:
            return
        await self.bus.js.publish(
            publication.subject, data, headers={"Nats-Msg-Id": publication.msg_id}
        )
        self.published += 1
        if store is not None:
            if isinstance(message, Alarm) and publication.update:
                await store.update_alarm(message)
            elif isinstance(message, Alarm):
                await store.record_alarm(message)
            elif isinstance(message, PathEvent):
                await store.record_event(message)
