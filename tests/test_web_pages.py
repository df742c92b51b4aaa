"""The status page over HTTP, against a real nats-server and a real SQLite store:
errors people can cause (404 / 400 pages with a reason), the token rule, the
history JSON the charts draw, and live rows on the event stream."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import msgspec

from aggregator.history import HistoryStore
from pathwatch.runtime.bus import Bus
from schemas import subjects
from schemas.history import FIVE_MINUTES, RAW
from schemas.wire import LaneStats, PathState, WindowStats
from tests.conftest import wait_for
from tests.webstack import page_config, serving


def _service() -> str:
    return f"web-{uuid.uuid4().hex[:8]}"


def _window(service: str, start: float, latency: float, errors: int = 0) -> WindowStats:
    lane = LaneStats(
        protocol="tcp",
        traffic_class="best-effort",
        count=10,
        errors=errors,
        error_pct=10.0 * errors,
        outcomes={"ok": 10 - errors, "timeout": errors},
        loss_pct=10.0 * errors,
        latency_min_ms=latency / 2,
        latency_max_ms=latency * 2,
        latency_mean_ms=latency,
        latency_median_ms=latency,
        latency_p90_ms=latency * 1.5,
        jitter_ms=latency / 10,
    )
    return WindowStats(
        service=service, route="r1", window_start=start, window_end=start + 5, lanes=[lane]
    )


async def write_history(store: Path, service: str, now: float, windows: int) -> None:
    """`windows` 5-s windows of r1 ending at `now`, latency 1, 2, 3, ... ms."""
    history = await HistoryStore(store).open()
    try:
        for i in range(windows):
            start = now - 5 * (windows - i)
            history.add(_window(service, start, float(i + 1), errors=i % 3))
        await history.flush()
    finally:
        await history.close()


async def test_unknown_service_or_route_gets_a_404_page(
    bus: Bus, nats_url: str, tmp_path: Path
) -> None:
    service = _service()
    async with (
        serving(page_config(nats_url, tmp_path / "pw.db", service), bus) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        for path in (f"/routes/{service}/nope", "/routes/no-such-service/r1"):
            reply = await client.get(path)
            assert reply.status_code == 404, (path, reply.text)
            assert reply.headers["content-type"].startswith("text/html")
            assert "unknown service route" in reply.text
        known = await client.get(f"/routes/{service}/r2")
        assert known.status_code == 200, known.text
        events = await client.get(f"/events/routes/{service}/nope")
        assert events.status_code == 404
        api = await client.get(f"/api/v1/history/{service}/nope")
        assert api.status_code == 404
        assert "unknown service route" in api.json()["detail"]


async def test_bad_span_or_lane_gets_400_with_a_reason(
    bus: Bus, nats_url: str, tmp_path: Path
) -> None:
    service = _service()
    async with (
        serving(page_config(nats_url, tmp_path / "pw.db", service), bus) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        page = await client.get(f"/routes/{service}/r1", params={"span": "3w"})
        assert page.status_code == 400
        assert "span &#39;3w&#39; is not one of 15m, 1h, 24h, 7d" in page.text
        api = await client.get(f"/api/v1/history/{service}/r1", params={"span": "<b>"})
        assert api.status_code == 400
        assert "is not one of 15m, 1h, 24h, 7d" in api.json()["detail"]
        lane = await client.get(f"/routes/{service}/r1", params={"lane": "udp/high/probe"})
        assert lane.status_code == 400
        assert "is not a lane of this route" in lane.text


async def test_history_json_is_rollups_then_the_newest_raw_windows(
    bus: Bus, nats_url: str, tmp_path: Path
) -> None:
    service, store, now = _service(), tmp_path / "pw.db", time.time()
    await write_history(store, service, now, windows=240)  # 20 minutes
    history = await HistoryStore(store).open()
    rolled = await history.rollup(now=now)  # 5-minute buckets settled 60 s ago
    await history.close()
    assert rolled > 0
    async with (
        serving(page_config(nats_url, store, service), bus) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        raw = (await client.get(f"/api/v1/history/{service}/r1?span=15m")).json()
        day = (await client.get(f"/api/v1/history/{service}/r1?span=24h")).json()
    assert raw["resolution"] == RAW
    assert {row["resolution"] for row in raw["rows"]} == {RAW}
    assert len(raw["rows"]) == 180  # 15 minutes of 5-s windows
    assert day["resolution"] == FIVE_MINUTES
    kinds = [row["resolution"] for row in day["rows"]]
    assert kinds[0] == FIVE_MINUTES and kinds[-1] == RAW, kinds
    assert kinds == sorted(kinds, reverse=True), "rollups first, then the newest raw windows"
    last_bucket = max(r["window_end"] for r in day["rows"] if r["resolution"] == FIVE_MINUTES)
    assert min(r["window_end"] for r in day["rows"] if r["resolution"] == RAW) > last_bucket
    assert day["rows"][-1]["latency_mean_ms"] == 240.0


async def test_pages_follow_the_api_token_rule(bus: Bus, nats_url: str, tmp_path: Path) -> None:
    service, token = _service(), "s3cret-token"
    config = page_config(nats_url, tmp_path / "pw.db", service, token=token)
    async with serving(config, bus) as base, httpx.AsyncClient(base_url=base) as client:
        page = await client.get("/", headers={"accept": "text/html"})
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2F"
        for path in ("/events/overview", f"/api/v1/history/{service}/r1"):
            assert (await client.get(path)).status_code == 401, path
        wrong = await client.post("/login", data={"token": "nope", "next": "/alarms"})
        assert wrong.status_code == 401 and "not valid" in wrong.text
        right = await client.post("/login", data={"token": token, "next": "//evil.example"})
        assert right.status_code == 303 and right.headers["location"] == "/"
        cookie = right.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert (await client.get("/alarms")).status_code == 200  # the cookie
        # the JSON a signed-in page links to opens in the browser; a change still needs
        # the bearer header
        assert (await client.get("/api/v1/alarms")).status_code == 200
        put = await client.put("/api/v1/probe-state/p?service=x&route=y", json={})
        assert put.status_code == 401
        bearer = {"authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=bearer) as with_header:
            assert (await with_header.get(f"/routes/{service}/r1")).status_code == 200
            history = await with_header.get(f"/api/v1/history/{service}/r1")
            assert history.status_code == 200


async def test_overview_stream_sends_a_row_when_the_kv_state_changes(
    bus: Bus, nats_url: str, tmp_path: Path
) -> None:
    service = _service()
    kv = await bus.kv(subjects.KV_PATHS)
    config = page_config(nats_url, tmp_path / "pw.db", service)
    async with (
        serving(config, bus) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as client,
        client.stream("GET", "/events/overview") as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        rows: dict[str, str] = {}

        async def row_says_down() -> bool:
            event = ""
            async for line in lines:
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "rows":
                    rows.update(json.loads(line[6:])["rows"])
                    break
            return "state-down" in rows.get(f"path-{service}.r1", "")

        await row_says_down()  # the first event: every row
        assert f"path-{service}.r2" in rows
        state = PathState(service=service, route="r1", state="down", in_service=False)
        await kv.put(subjects.path_key(service, "r1"), msgspec.json.encode(state))
        await wait_for(row_says_down, 5, what="the row to say down")
        assert "in_service" not in rows[f"path-{service}.r1"]
