"""Upsert pathwatch's Prometheus data source, folder and dashboards into Grafana (grafana-client).

Idempotent: the data source is looked up by uid, then by name, and updated
in place when found (created otherwise); the folder is created only when
missing; dashboards are saved through `POST /api/dashboards/db` with
`overwrite: true` under their fixed uids, so a second run updates the same
objects and never duplicates them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError

DATASOURCE_UID = "pathwatch-prometheus"
DATASOURCE_NAME = "pathwatch Prometheus"
FOLDER_UID = "pathwatch"
FOLDER_TITLE = "pathwatch"
DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"
NOT_FOUND = 404


@dataclass
class ProvisionReport:
    """What one provisioning run did."""

    datasource: str = ""
    folder: str = ""
    dashboards: list[tuple[str, int, str]] = field(default_factory=list)


def connect(url: str, token: str | None, timeout: float = 10.0) -> GrafanaApi:
    """A grafana-client API object for `url` authenticating with a bearer token."""
    api: GrafanaApi = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    return api


def datasource_body(prometheus_url: str) -> dict[str, Any]:
    """The Prometheus data source as the data source API expects it."""
    return {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": "prometheus",
        "access": "proxy",
        "url": prometheus_url,
        "basicAuth": False,
        "isDefault": False,
        "jsonData": {"httpMethod": "POST", "timeInterval": "15s"},
    }


def _lookup(lookup: Callable[[str], Any], key: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = lookup(key)
    except GrafanaClientError as error:
        if error.status_code == NOT_FOUND:
            return None
        raise
    return found


def upsert_datasource(api: GrafanaApi, prometheus_url: str) -> str:
    """Create or update the data source; returns `created` or `updated`."""
    body = datasource_body(prometheus_url)
    existing = _lookup(api.datasource.get_datasource_by_uid, DATASOURCE_UID) or _lookup(
        api.datasource.get_datasource_by_name, DATASOURCE_NAME
    )
    if existing is None:
        api.datasource.create_datasource(body)  # type: ignore[no-untyped-call]
        return "created"
    uid = str(existing.get("uid") or DATASOURCE_UID)
    api.datasource.update_datasource_by_uid(uid, {**body, "uid": uid})  # type: ignore[no-untyped-call]
    return "updated"


def ensure_folder(api: GrafanaApi) -> str:
    """Create the pathwatch folder when missing; returns `created` or `exists`."""
    if _lookup(api.folder.get_folder, FOLDER_UID) is not None:
        return "exists"
    api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)  # type: ignore[no-untyped-call]
    return "created"


def save_dashboard(api: GrafanaApi, model: Mapping[str, Any]) -> tuple[str, int, str]:
    """Save one dashboard (overwrite) into the folder; returns (uid, version, url)."""
    dashboard = {**model, "id": None}
    answer: dict[str, Any] = api.dashboard.update_dashboard(  # type: ignore[no-untyped-call]
        {
            "dashboard": dashboard,
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": "provisioned by pathwatch",
        }
    )
    return (
        str(answer.get("uid", model.get("uid", ""))),
        int(answer.get("version", 0)),
        str(answer.get("url", "")),
    )


def provision(
    api: GrafanaApi,
    dashboards: Mapping[str, Mapping[str, Any]],
    prometheus_url: str = DEFAULT_PROMETHEUS_URL,
    on_step: Callable[[str], None] | None = None,
) -> ProvisionReport:
    """Upsert the data source, the folder and every dashboard; `on_step` hears each step done."""
    step = on_step or (lambda _text: None)
    report = ProvisionReport()
    report.datasource = upsert_datasource(api, prometheus_url)
    step(f"data source {DATASOURCE_NAME!r} {report.datasource}")
    report.folder = ensure_folder(api)
    step(f"folder {FOLDER_TITLE!r} {report.folder}")
    for name, model in dashboards.items():
        saved = save_dashboard(api, model)
        report.dashboards.append(saved)
        step(f"dashboard {name} saved (uid {saved[0]}, version {saved[1]})")
    return report
