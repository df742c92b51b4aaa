"""The CLI's client of the pathwatch REST API: one request, its JSON, or an exit with the reason.

It uses the standard library's HTTP client on purpose: `pathwatch show ...`
must answer within a few hundred milliseconds, and importing a full HTTP client
library costs about a tenth of a second on its own.

Exit statuses of every command that calls the API (see docs/cli.md):
2 when the API answers 404 (an unknown service, route or probe), 3 when the
API cannot be reached or answers any other error.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

DEFAULT_API = "http://127.0.0.1:8640"
EXIT_NOT_FOUND = 2
EXIT_API_ERROR = 3
TIMEOUT_SECONDS = 5.0

err_console = Console(stderr=True, soft_wrap=True)

ApiOption = Annotated[
    str, typer.Option("--api", help="Base URL of the pathwatch REST API.", envvar="PATHWATCH_API")
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", help="Bearer token of the API.", envvar="PATHWATCH_API_TOKEN"),
]


def quote(name: str) -> str:
    """A name as one URL path segment."""
    return urllib.parse.quote(name, safe="")


def api_request(
    method: str,
    api: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    body: Any = None,
    token: str | None = None,
) -> Any:
    """Call the API and return its decoded JSON; on failure print why and exit (2 or 3)."""
    query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
    url = f"{api.rstrip('/')}{path}" + (f"?{query}" if query else "")
    headers = {"Accept": "application/json"}
    token = token or os.environ.get("PATHWATCH_API_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        _fail(exc.code, _detail(exc))
    except (OSError, ValueError) as exc:  # URLError, refused, timeout, a reply that is not JSON
        reason = getattr(exc, "reason", exc)
        err_console.print(
            f"[bold red]error:[/] cannot reach the API at {escape(api)}: {escape(str(reason))}",
            highlight=False,
        )
        raise typer.Exit(EXIT_API_ERROR) from None


def _detail(exc: urllib.error.HTTPError) -> str:
    text = exc.read().decode(errors="replace")
    try:
        detail = json.loads(text).get("detail", text)
    except (ValueError, AttributeError):
        detail = text
    return str(detail or exc.reason)


def _fail(status: int, detail: str) -> NoReturn:
    shown = escape(detail) if status == 404 else f"{status}: {escape(detail)}"
    err_console.print(f"[bold red]error:[/] {shown}", highlight=False)
    raise typer.Exit(EXIT_NOT_FOUND if status == 404 else EXIT_API_ERROR)
