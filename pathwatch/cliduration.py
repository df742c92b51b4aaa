"""Duration options and arguments of the CLI (`--since 1h`, `--ttl 30s`, `--hold-down 6`).

The text is read by the project's one duration parser (`schemas.durations`):
a plain number is seconds, a string may carry units (`200ms`, `5m`, `1m30s`).
Use as `typer.Option(parser=duration_option)` or call it on an option's text.
"""

import typer

from schemas.durations import DurationError, parse_duration


def duration_option(text: str) -> float:
    """Seconds of a CLI duration; a bad one is a usage error that says what was expected."""
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise typer.BadParameter(str(exc)) from None
