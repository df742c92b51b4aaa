"""A recording HTTP server on loopback that answers like the Grafana HTTP API.

No Grafana server can be installed on the test machines, so the grafana-client
calls are checked against the documented requests instead: this server
implements the documented paths, methods, bodies and answers of the
endpoints pathwatch uses (data sources by uid / name, folders, `POST
/api/dashboards/db`, `POST /api/annotations`), keeps their state like Grafana
does (ids, versions, 404 / 409 / 412 on the documented conditions), demands
`Authorization: Bearer <token>` and records every request.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    authorization: str


@dataclass
class GrafanaState:
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    next_id: int = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


class GrafanaRecorder:
    """Start with `start()`, read `url`, `requests` and `state`, `stop()` at the end."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.requests: list[Recorded] = []
        self.state = GrafanaState()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> GrafanaRecorder:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _answer(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    self._answer(400, {"message": "bad request data"})
                    return
                path = unquote(urlsplit(self.path).path)
                auth = self.headers.get("Authorization", "")
                with recorder.lock:
                    recorder.requests.append(Recorded(self.command, path, body, auth))
                    if auth != f"Bearer {recorder.token}":
                        self._answer(401, {"message": "Unauthorized"})
                        return
                    status, payload = recorder.route(self.command, path, body)
                self._answer(status, payload)

            do_GET = _handle
            do_POST = _handle
            do_PUT = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    # --- the documented endpoints ------------------------------------------

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        state = self.state
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "datasources"]:
            return self._datasources(method, parts[2:], body)
        if parts[:2] == ["api", "folders"]:
            if method == "GET" and len(parts) == 3:
                folder = state.folders.get(parts[2])
                return (200, folder) if folder else (404, {"message": "folder not found"})
            if method == "POST" and len(parts) == 2:
                if not isinstance(body, dict) or not body.get("title"):
                    return 400, {"message": "folder title cannot be empty"}
                uid = body.get("uid") or f"f{state.next_id}"
                if uid in state.folders:
                    return 409, {"message": "a folder with the same uid already exists"}
                folder = {
                    "id": state.new_id(),
                    "uid": uid,
                    "title": body["title"],
                    "url": f"/dashboards/f/{uid}/",
                    "version": 1,
                }
                state.folders[uid] = folder
                return 200, folder
        if path == "/api/dashboards/db" and method == "POST":
            return self._save_dashboard(body)
        if path == "/api/annotations" and method == "POST":
            if not isinstance(body, dict) or not body.get("text"):
                return 400, {"message": "Failed to save annotation"}
            annotation = {**body, "id": state.new_id()}
            state.annotations.append(annotation)
            return 200, {"message": "Annotation added", "id": annotation["id"]}
        return 404, {"message": "Not found"}

    def _datasources(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        state = self.state
        missing = (404, {"message": "Data source not found"})
        if method == "POST" and not rest:
            if not isinstance(body, dict) or not body.get("name") or not body.get("type"):
                return 400, {"message": "bad request data"}
            if any(ds["name"] == body["name"] for ds in state.datasources.values()):
                return 409, {"message": "data source with the same name already exists"}
            uid = body.get("uid") or f"ds{state.next_id}"
            if uid in state.datasources:
                return 409, {"message": "data source with the same uid already exists"}
            datasource = {**body, "id": state.new_id(), "uid": uid, "version": 1}
            state.datasources[uid] = datasource
            return 200, {
                "datasource": datasource,
                "id": datasource["id"],
                "message": "Datasource added",
                "name": datasource["name"],
            }
        if len(rest) == 2 and rest[0] == "uid":
            current = state.datasources.get(rest[1])
            if current is None:
                return missing
            if method == "GET":
                return 200, current
            if method == "PUT":
                if not isinstance(body, dict) or not body.get("name") or not body.get("type"):
                    return 400, {"message": "bad request data"}
                updated = {
                    **body,
                    "id": current["id"],
                    "uid": rest[1],
                    "version": current["version"] + 1,
                }
                state.datasources[rest[1]] = updated
                return 200, {
                    "datasource": updated,
                    "id": updated["id"],
                    "message": "Datasource updated",
                    "name": updated["name"],
                }
        if len(rest) == 2 and rest[0] == "name" and method == "GET":
            for datasource in state.datasources.values():
                if datasource["name"] == rest[1]:
                    return 200, datasource
            return missing
        return 404, {"message": "Not found"}

    def _save_dashboard(self, body: Any) -> tuple[int, Any]:
        state = self.state
        if not isinstance(body, dict) or not isinstance(body.get("dashboard"), dict):
            return 400, {"message": "bad request data"}
        model = body["dashboard"]
        if not model.get("title"):
            return 400, {"message": "Dashboard title cannot be empty"}
        folder_uid = body.get("folderUid")
        if folder_uid and folder_uid not in state.folders:
            return 400, {"message": "folder not found"}
        uid = model.get("uid") or f"d{state.next_id}"
        current = state.dashboards.get(uid)
        if current is not None and not body.get("overwrite"):
            return 412, {
                "message": "A dashboard with the same uid already exists",
                "status": "name-exists",
            }
        version = current["version"] + 1 if current else 1
        dashboard_id = current["id"] if current else state.new_id()
        slug = str(model["title"]).lower().replace(" ", "-")
        state.dashboards[uid] = {
            "id": dashboard_id,
            "uid": uid,
            "version": version,
            "folderUid": folder_uid,
            "model": model,
        }
        return 200, {
            "id": dashboard_id,
            "uid": uid,
            "url": f"/d/{uid}/{slug}",
            "status": "success",
            "version": version,
            "slug": slug,
        }
