"""`pathwatch config push | history | rollback | show --from nats` as an operator runs them,
against a real nats-server: a bad file is refused with every error before anything is
stored; a rollback is a new revision holding the old text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.configstore import ConfigStore, StoredConfig, StoreError, push_checked

GOOD = """\
services:
  web:
    address: [127.0.0.1/32]
    service-routes:
      r1:
        next-hop: {node: n1}
        reachability-detection: {hold-down: HOLD}
"""
#: three errors in three places
BAD = """\
services:
  web:
    address: [not-an-address]
    service-routes:
      r1:
        next-hop: {node: "bad node"}
        reachability-detection: {hold-down: -5}
"""


def pathwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pathwatch", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


async def latest(bus: Bus, name: str) -> StoredConfig | None:
    try:
        store = await ConfigStore.open(bus)
    except StoreError:
        return None  # the bucket is made by the first push
    return await store.latest(name)


async def test_push_history_rollback_and_show(bus: Bus, nats_url: str, tmp_path: Path) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    where = ["--config-name", name, "--nats", nats_url]
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    refused = pathwatch("config", "push", str(bad), *where)
    assert refused.returncode == 2, refused.stderr
    errors = [line for line in refused.stderr.splitlines() if ": error: " in line]
    assert [line.split(": error:")[0].strip() for line in errors] == [
        f"{bad}:3:15",
        f"{bad}:6:26",
        f"{bad}:7:45",
    ], refused.stderr
    assert await latest(bus, name) is None  # nothing was stored

    site = tmp_path / "site.yaml"
    site.write_text(GOOD.replace("HOLD", "30s"))
    first = pathwatch("config", "push", str(site), *where, "-m", "first")
    assert first.returncode == 0, first.stderr
    pushed = await latest(bus, name)
    assert pushed is not None and f"revision {pushed.revision} " in first.stdout
    second = GOOD.replace("HOLD", "45s")
    store = await ConfigStore.open(bus)
    await push_checked(store, parse_config(second, "site.yaml"), second, name=name)

    rolled = pathwatch("config", "rollback", str(pushed.revision), *where)
    assert rolled.returncode == 0, rolled.stderr
    history = pathwatch("config", "history", *where, "--json").stdout.splitlines()
    rows = [json.loads(line) for line in history]
    assert [row["comment"] for row in rows] == ["first", "", ""]
    assert rows[-1]["rollback_of"] == pushed.revision
    assert [row["digest"] for row in rows][::2] == [pushed.record.digest] * 2
    older = pathwatch("config", "show", "--revision", str(rows[1]["revision"]), *where)
    assert older.stdout == second
