"""HTML of the status page: one Jinja2 environment over the package's templates
(autoescaped: reasons and names from the wire are text, never markup), the
filters the templates share, and whole pages or fragments for live updates.

Relative times ("4m 10s ago", a hold-down counting down) are written by the
page's script from the timestamps in `data-ts`; the server writes the absolute
UTC time, which is what a reader without script sees.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from jinja2 import Environment, PackageLoader, select_autoescape
from litestar.response import Response
from markupsafe import Markup

#: The vendored chart library (static/vendor/README.md).
UPLOT = "vendor/uplot-1.6.32"


def num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def clock(ts: float | None) -> str:
    """An absolute UTC time for humans, or '-' when unset (gmtime: strftime is slow)."""
    if not ts:
        return "-"
    t = time.gmtime(ts)
    return (
        f"{t.tm_year}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f" {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} UTC"
    )


def counters(values: dict[str, int]) -> str:
    """Non-zero counters (success always), as the router shows probe counters."""
    shown = [f"{name} {value}" for name, value in sorted(values.items()) if value]
    if "success" in values and not values["success"]:
        shown.insert(0, "success 0")
    return ", ".join(shown) or "-"


def to_json(value: Any) -> Markup:
    """JSON safe inside a <script type="application/json"> element."""
    text = msgspec.json.encode(value).decode()
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


class Renderer:
    """Renders templates to responses or strings."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("enforcer.web", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # templates ship with the package; no stat per page
        )
        self.env.filters.update(num=num, clock=clock, counters=counters, to_json=to_json)
        self.env.globals.update(uplot=UPLOT)
        self.login_required = False

    def html(self, template: str, **context: Any) -> str:
        context.setdefault("now", time.time())
        context.setdefault("logout", self.login_required)
        return self.env.get_template(template).render(**context)

    def page(self, template: str, *, status: int = 200, **context: Any) -> Response[str]:
        return Response(
            self.html(template, **context),
            status_code=status,
            media_type="text/html; charset=utf-8",
            headers={"cache-control": "no-store"},
        )

    def fragment(self, macro: str, *args: Any) -> str:
        """One macro of `fragments.html`, as markup for a live update."""
        module = self.env.get_template("fragments.html").module
        return str(getattr(module, macro)(*args))
