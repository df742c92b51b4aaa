"""The status page in a real browser: Debian's chromium driven headless by
Playwright for Python (pointed at /usr/bin/chromium; Playwright never downloads
a browser here). Skipped with the reason when chromium or Playwright is missing.

1. `pathwatch up` (a real subprocess on the session's nats-server) watches a TCP
   listener on loopback; the open overview shows the route `up`, then `down`
   without a reload when the listener closes; the alarm appears on an open
   alarms page and behind the overview's alarm link; screenshots of the
   overview and of the route page during the failure go to the test's tmp dir.
2. The route page's plotted series are the history store's rows as the JSON
   API gives them, and a window published on NATS joins the chart live.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from pathwatch.runtime.bus import Bus
from pathwatch.runtime.embedded import free_port
from schemas import subjects
from tests.conftest import wait_for
from tests.test_e2e_up import Listener
from tests.test_web_pages import _window, write_history
from tests.webstack import page_config, serving

CHROMIUM = os.environ.get("PATHWATCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="Playwright for Python is not installed (pip: playwright)"
)
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"no chromium at {CHROMIUM} (Debian package `chromium`; scripts/test installs it)",
)
expect = playwright_api.expect


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless chromium with a fresh profile (Playwright's temporary user-data-dir)."""
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        try:
            yield launched
        finally:
            await launched.close()


def up_config(nats_url: str, tmp_path: Path, service: str, target_port: int) -> str:
    return f"""
nats: {{url: "{nats_url}"}}
api: {{listen: "127.0.0.1:{free_port()}"}}
metrics: {{listen: "127.0.0.1:{free_port()}"}}
store: {{path: "{tmp_path / "pw.db"}"}}
reachability-profiles:
  strict:
    tcp:
      best-effort: {{acceptable-error-threshold: 25}}
tcp-probe-profiles:
  svc:
    probe-interval: 0.1
    number-of-attempts: 1
    probe-duration: 0.05
    probe-address: [127.0.0.1]
    port: {target_port}
services:
  {service}:
    address: [127.0.0.1/32]
    service-policy: {{best-effort: false}}
    service-routes:
      r1:
        next-hop: {{node: local, interface: lo}}
        reachability-detection:
          detection-window: 1
          hold-down: 60
          consecutive-failures: 0
          reachability-profile: strict
          probes: [{{name: svc, tcp-probe-profile: svc}}]
"""


async def _answers(base: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    assert process.poll() is None, log.read_text()  # noqa: ASYNC240 (only on failure)
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{base}/healthz", timeout=1)).status_code == 200
    except httpx.HTTPError:
        return False


async def test_overview_turns_down_live_and_the_alarm_shows(
    browser: Any, nats_url: str, tmp_path: Path
) -> None:
    service = f"ui-{uuid.uuid4().hex[:8]}"
    listener = Listener(free_port())
    await listener.open()
    config = tmp_path / "pathwatch.yaml"
    config.write_text(up_config(nats_url, tmp_path, service, listener.port))
    base = "http://" + config.read_text().split('listen: "', 1)[1].split('"', 1)[0]
    log = tmp_path / "up.log"
    with log.open("w") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 (the test waits on it in a thread)
            [sys.executable, "-m", "pathwatch", "up", "-c", str(config)],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        await wait_for(lambda: _answers(base, process, log), 20, what="pathwatch up's API")
        page = await browser.new_page(viewport={"width": 1100, "height": 700})
        await page.goto(f"{base}/")
        await page.evaluate("window.notReloaded = true")
        state = page.locator(f'[id="path-{service}.r1"] .state')
        await expect(state).to_have_text("up", timeout=20_000)
        alarms_page = await browser.new_page()
        await alarms_page.goto(f"{base}/alarms")
        await expect(alarms_page.locator("#live")).to_have_text("live")

        await listener.close()
        await expect(state).to_have_text("down", timeout=8_000)
        assert await page.evaluate("window.notReloaded") is True, "the overview was reloaded"
        active = alarms_page.locator("#alarms-active tbody")
        await expect(active).to_contain_text(service, timeout=5_000)
        await expect(active).to_contain_text("raised")
        await page.screenshot(path=tmp_path / "overview.png", full_page=True)

        await page.locator(f'[id="path-{service}.r1"] a.alarm-count').click()
        await expect(page.locator("#alarms-active tbody tr:not([hidden])")).to_contain_text("r1")
        await page.locator("#alarms-active a", has_text="r1").first.click()
        await expect(page.locator("#route-state-name")).to_contain_text("down")
        await page.wait_for_function("window.pwCharts && window.pwCharts.latency")
        await page.screenshot(path=tmp_path / "route.png", full_page=True)

        started = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)  # with two event streams open
        await asyncio.to_thread(process.wait, 5)
        assert time.monotonic() - started < 2.0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        await listener.close()


_SERIES = {
    "latency": [
        "latency_min_ms",
        "latency_mean_ms",
        "latency_median_ms",
        "latency_p90_ms",
        "latency_max_ms",
    ],
    "loss": ["loss_pct"],
    "error": ["error_pct"],
    "jitter": ["jitter_ms"],
}
_PLOTTED = "Object.fromEntries(Object.entries(window.pwCharts).map(([k, u]) => [k, u.data]))"


async def test_route_page_plots_the_history_store_and_new_windows(
    browser: Any, bus: Bus, nats_url: str, tmp_path: Path
) -> None:
    service, store, now = f"ui-{uuid.uuid4().hex[:8]}", tmp_path / "pw.db", time.time()
    await write_history(store, service, now - 5, windows=120)
    async with serving(page_config(nats_url, store, service), bus) as base:
        page = await browser.new_page()
        await page.goto(f"{base}/routes/{service}/r1?span=15m")
        await page.wait_for_function("window.pwCharts && window.pwCharts.jitter")
        plotted = await page.evaluate(_PLOTTED)
        async with httpx.AsyncClient() as client:
            reply = await client.get(f"{base}/api/v1/history/{service}/r1?span=15m")
        rows = [row for row in reply.json()["rows"] if row["protocol"] == "tcp"]
        assert len(rows) == 120
        for chart, names in _SERIES.items():
            assert plotted[chart][0] == [row["window_end"] for row in rows], chart
            for i, name in enumerate(names, start=1):
                assert plotted[chart][i] == [row[name] for row in rows], (chart, name)
        assert plotted["latency"][2] == [float(i) for i in range(1, 121)]
        limits = await page.locator("#limits").inner_text()
        assert "time-to-establishment max\t300" in limits, limits

        await expect(page.locator("#live")).to_have_text("live")
        window = _window(service, now - 2, 500.0)
        await bus.nc.publish(subjects.stats(service, "r1"), msgspec.json.encode(window))
        await page.wait_for_function(
            "(t) => window.pwCharts.latency.data[0].at(-1) === t", arg=window.window_end
        )
        plotted = await page.evaluate(_PLOTTED)
        assert plotted["latency"][2][-1] == 500.0
        assert len(plotted["latency"][0]) == 121
