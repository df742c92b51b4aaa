"""The fleet's configs in KV `pathwatch-config` and the sources roles follow, against a real
nats-server: pushes and a linear history (rollback is a new revision), a KV source that
waits for a config, starts from the newest good revision and follows new ones, refuses
bad ones (counted per role, last good kept), and a role that cannot apply one."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.configsource import ConfigSource, FileSource, KvSource, LiveConfig, Revision
from pathwatch.runtime.configstore import ConfigStore, StoreError, push_checked, record_for
from pathwatch.runtime.status import RoleCounters
from schemas.codec import encode
from schemas.config import PathwatchConfig
from tests.conftest import wait_for

CONFIG = """\
services:
  web:
    address: [127.0.0.1/32]
    service-routes:
      r1:
        next-hop: {{node: n1}}
        reachability-detection: {{hold-down: {hold}}}
"""


def text(hold: str) -> str:
    return CONFIG.format(hold=hold)


async def push(store: ConfigStore, name: str, hold: str, **kwargs: object) -> int:
    body = text(hold)
    loaded = parse_config(body, "site.yaml")
    pushed = await push_checked(store, loaded, body, name=name, **kwargs)  # type: ignore[arg-type]
    return pushed.revision


def holds(config: PathwatchConfig) -> float:
    return config.services["web"].service_routes["r1"].reachability_detection.hold_down


@pytest.fixture
def name() -> str:
    """A config name of its own per test (the bucket outlives tests)."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def store(bus: Bus) -> ConfigStore:
    return await ConfigStore.open(bus, create=True)


@contextlib.asynccontextmanager
async def following(source: KvSource) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_history_is_linear_and_a_rollback_is_a_new_revision(
    store: ConfigStore, name: str
) -> None:
    first = await push(store, name, "30s")
    second = await push(store, name, "45s", comment="longer hold-down")
    again = await push(store, name, "45s")
    assert again == second  # the same text again writes nothing
    old = await store.at(name, first)
    loaded = old.load()
    rolled = await push_checked(store, loaded, old.record.text, name=name, rollback_of=first)
    history = await store.history(name)
    revisions = [item.revision for item in history if not isinstance(item, tuple)]
    assert revisions == [first, second, rolled.revision]
    latest = await store.latest(name)
    assert latest is not None and latest.record.rollback_of == first
    assert latest.record.text == text("30s") and latest.record.digest == loaded.digest
    assert history[1].record.comment == "longer hold-down"  # type: ignore[union-attr]
    assert latest.label.startswith(f"kv:{name}@{rolled.revision}/") and latest.label.endswith(
        ".yaml"
    )


async def test_a_push_on_a_stale_latest_revision_is_refused(store: ConfigStore, name: str) -> None:
    first = await push(store, name, "30s")
    await push(store, name, "31s")
    loaded = parse_config(text("32s"), "site.yaml")
    with pytest.raises(StoreError, match="landed first"):
        await store.push(record_for(loaded, text("32s"), name=name), after=first)


async def test_a_kv_source_waits_for_a_config_then_follows_every_revision(
    bus: Bus, store: ConfigStore, name: str
) -> None:
    stop = asyncio.Event()
    opening = asyncio.create_task(KvSource.open(bus, name, stop))
    await asyncio.sleep(0.3)
    assert not opening.done()  # nothing pushed yet: it waits
    first = await push(store, name, "30s")
    source = await asyncio.wait_for(opening, 5)
    assert source.current.kv_revision == first and holds(source.current.config) == 30
    agent, router = source.live("agent"), source.live("router")
    applied: list[float] = []
    agent.on_change(lambda config: applied.append(holds(config)))
    async with following(source):
        second = await push(store, name, "40s")
        await wait_for(lambda: router.current.kv_revision == second, 5, what="second revision")
        assert applied == [40] and agent.current.kv_revision == second
        assert router.current.mark.digest == parse_config(text("40s"), "x.yaml").digest


async def test_a_bad_revision_in_kv_is_refused_by_every_role_which_keeps_the_last_good_one(
    bus: Bus, store: ConfigStore, name: str
) -> None:
    good = await push(store, name, "30s")
    source = await KvSource.open(bus, name, asyncio.Event())
    lives = [source.live(role) for role in ("agent", "aggregator", "enforcer")]
    async with following(source):
        bad = text("-5")  # written straight into KV, past the push's check
        record = record_for(parse_config(text("30s"), "x.yaml"), bad, name=name)
        await store.kv.put(name, encode(record))
        await wait_for(
            lambda: all(live.refused["invalid"] == 1 for live in lives), 5, what="refusals"
        )
        await store.kv.put(name, b'{"not": "a config record"}')
        await wait_for(lambda: all(live.refused["invalid"] == 2 for live in lives), 5, what="more")
        assert all(live.current.kv_revision == good for live in lives)
        status = RoleCounters("agent", "a", live=lives[0]).status(0.0)
        assert status.dropped == {"config:invalid": 2}
        assert status.config is not None and status.config.revision == good
        fixed = await push(store, name, "50s")
        await wait_for(
            lambda: all(live.current.kv_revision == fixed for live in lives), 5, what="fix"
        )


async def test_a_source_starts_from_the_newest_good_revision(
    bus: Bus, store: ConfigStore, name: str
) -> None:
    good = await push(store, name, "30s")
    await store.kv.put(name, b"garbage")
    source = await KvSource.open(bus, name, asyncio.Event())
    assert source.current.kv_revision == good
    live = source.live("agent")
    assert live.refused["invalid"] == 1
    async with following(source):  # the watch gives the bad latest again: not refused twice
        newer = await push(store, name, "45s")
        await wait_for(lambda: live.current.kv_revision == newer, 5, what="newer")
    assert live.refused["invalid"] == 1


async def test_a_role_that_cannot_apply_a_revision_keeps_its_own(
    bus: Bus, store: ConfigStore, name: str
) -> None:
    await push(store, name, "30s")
    source = await KvSource.open(bus, name, asyncio.Event())
    picky, easy = source.live("healer"), source.live("router")

    def refuse(_: PathwatchConfig) -> None:
        raise ValueError("the route the client is on is gone")

    picky.on_change(refuse)
    async with following(source):
        newer = await push(store, name, "60s")
        await wait_for(lambda: easy.current.kv_revision == newer, 5, what="applied")
        assert picky.refused == {"cannot-apply": 1} and holds(picky.config) == 30


async def test_a_file_source_reads_the_file_again_on_reload(tmp_path: Path) -> None:
    path = tmp_path / "pathwatch.yaml"
    path.write_text(text("30s"))
    source = FileSource(path, parse_config(text("30s"), str(path)))
    live = source.live("aggregator", ("store",))
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        path.write_text(text("not-a-duration"))
        source.reload()
        await wait_for(lambda: live.refused["invalid"] == 1, 5, what="refused")
        path.write_text(text("45s"))
        source.reload()
        await wait_for(lambda: holds(live.config) == 45, 5, what="reloaded")
        assert live.current.kv_revision == 0 and live.current.loaded.source == str(path)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_the_same_text_only_moves_the_revision() -> None:
    loaded = parse_config(text("30s"), "a.yaml")
    live = LiveConfig("api", Revision(loaded, 3))
    calls: list[object] = []
    live.on_change(calls.append)
    assert await live.offer(Revision(parse_config(text("30s"), "b.yaml"), 7))
    assert calls == [] and live.current.kv_revision == 7 and live.changed.is_set()


async def test_a_change_of_a_start_only_key_is_applied_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    live = ConfigSource(Revision(parse_config(text("30s"), "a.yaml"))).live("api", ("api.listen",))
    moved = "api: {listen: '127.0.0.1:9999'}\n" + text("30s")
    assert await live.offer(Revision(parse_config(moved, "a.yaml")))
    assert "api.listen changed; this role takes it at its next restart" in caplog.text
    caplog.clear()
    assert await live.offer(Revision(parse_config(moved.replace("30s", "40s"), "a.yaml")))
    assert "next restart" not in caplog.text and holds(live.config) == 40
