"""`pathwatch alarms --follow`: stream alarm raises and clears live from PATHWATCH_ALARMS."""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
from pathlib import Path
from typing import Annotated

import typer

from pathwatch.api_client import DEFAULT_API, ApiOption, TokenOption, api_request
from pathwatch.app import app, examples
from pathwatch.commands.show import alarm_table
from pathwatch.commands.show import console as show_console
from pathwatch.rolecli import (
    LogFormatOption,
    bus_options_or_exit,
    err_console,
    load_or_exit,
    run_until_signal,
    setup_logging,
)
from pathwatch.runtime.bus import Bus
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.wire import Alarm


@app.command(
    "alarms",
    epilog=examples(
        "pathwatch alarms",
        "pathwatch alarms --follow --nats nats://127.0.0.1:4222",
        "pathwatch alarms --follow --all --json -c pathwatch.yaml",
    ),
)
def alarms_command(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream raises and clears as they happen.")
    ] = False,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Config file (for nats.url).")
    ] = None,
    nats: Annotated[
        str | None, typer.Option("--nats", help="NATS URL; without it, alarms come from the API.")
    ] = None,
    since_start: Annotated[
        bool, typer.Option("--all", help="With --follow: replay the stream from its start.")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    log_format: LogFormatOption = "text",
) -> None:
    """List active alarms, or follow raises and clears live (`--follow`)."""
    if not follow:
        alarms = api_request("GET", api, "/api/v1/alarms", token=token)
        if json:
            for alarm in alarms:
                print(jsonlib.dumps(alarm))
        else:
            show_console.print(alarm_table(alarms) if alarms else "no active alarms")
        return
    setup_logging(log_format=log_format)
    loaded = load_or_exit(config)
    options = bus_options_or_exit(loaded.config.nats, "alarms-follow", nats)

    async def main(stop: asyncio.Event) -> None:
        from nats.js.api import DeliverPolicy

        bus = await Bus.connect(options, stop)

        async def on_alarm(msg: object) -> None:
            data: bytes = getattr(msg, "data", b"")
            try:
                alarm = decode_message(data, Alarm)
            except DecodeError as exc:
                err_console.print(f"[yellow]skipped malformed alarm:[/] {exc.reason}")
                return
            if json:
                print(data.decode(), flush=True)
            else:
                colour = "red" if alarm.status == "raised" else "green"
                where = "/".join(p for p in (alarm.service, alarm.route) if p)
                lane = "/".join(p for p in (alarm.protocol, alarm.traffic_class) if p)
                show_console.print(
                    f"[{colour}]{alarm.status:7}[/] {alarm.severity:8} {where} {lane}"
                    f" {alarm.cause}: {alarm.reason}  [dim]{alarm.id}[/]",
                    highlight=False,
                )

        try:
            # a fresh server has no alarm stream until a role makes it
            await bus.try_ensure(streams=[subjects.STREAM_ALARMS], buckets=[])
            subscription = await bus.js.subscribe(
                subjects.ALARM_ALL,
                stream=subjects.STREAM_ALARMS,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.ALL if since_start else DeliverPolicy.NEW,
                cb=on_alarm,
            )
            logging.getLogger("pathwatch.alarms").info("following %s", subjects.ALARM_ALL)
            await stop.wait()
            await subscription.unsubscribe()
        finally:
            await bus.close()

    run_until_signal(main)
