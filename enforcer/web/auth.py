"""Who may see the status page: the API's rule, plus a login form.

With no `api.token` (allowed on loopback only) every page is open. With a
token, a page request must present it, either as the API's bearer header or
as the `pathwatch_token` cookie that the login form sets (HttpOnly,
SameSite=Strict). A page request without it is sent to the login form; the
event stream answers 401.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from litestar import Request, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Response

from enforcer.web.render import Renderer

COOKIE = "pathwatch_token"


class LoginForm(msgspec.Struct, frozen=True):
    token: str = ""
    next: str = "/"


def presented_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The token a request carries: its bearer header, else its login cookie."""
    scheme, _, presented = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and presented.strip():
        return presented.strip()
    return connection.cookies.get(COOKIE, "")


def token_is_valid(presented: str, token: str) -> bool:
    return bool(presented) and hmac.compare_digest(presented.encode(), token.encode())


def safe_next(target: str) -> str:
    """Only a path on this server may follow a login (no open redirect)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


#: The token in force (it follows the config), None when there is none.
Token = Callable[[], str | None]


def page_guard(current: Token) -> Any:
    """A litestar guard for pages and their event streams."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        token = current()
        if token and not token_is_valid(presented_token(connection), token):
            raise NotAuthorizedException(detail="the status page needs the API token")

    return guard


def login_redirect(request: Request[Any, Any, Any]) -> Response[Any]:
    """Where an unauthorised page request goes: the login form, then back."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(f"/login?next={quote(target, safe='')}", status_code=303)


def login_handlers(current: Token, renderer: Renderer) -> list[Any]:
    """GET / POST /login and POST /logout."""

    @get("/login", sync_to_thread=False, include_in_schema=False)
    def login_page(next: FromQuery[str] = "/") -> Response[str]:
        open_page = not current()
        return renderer.page("login.html", next=safe_next(next), failed=False, open=open_page)

    @post("/login", sync_to_thread=False, include_in_schema=False)
    def login(
        data: Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[str]:
        target = safe_next(data.next)
        token = current()
        if token and not token_is_valid(data.token.strip(), token):
            return renderer.page("login.html", status=401, next=target, failed=True, open=False)
        cookie = Cookie(key=COOKIE, value=data.token.strip(), httponly=True, samesite="strict")
        return Redirect(target, status_code=303, cookies=[cookie])

    @post("/logout", sync_to_thread=False, include_in_schema=False)
    def logout() -> Response[str]:
        cookie = Cookie(key=COOKIE, value="", httponly=True, samesite="strict", max_age=0)
        return Redirect("/login", status_code=303, cookies=[cookie])

    return [login_page, login, logout]
