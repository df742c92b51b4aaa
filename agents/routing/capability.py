"""Does this process hold CAP_NET_ADMIN? Read from the effective capability bits in
/proc/self/status, without touching any route."""

from __future__ import annotations

from pathlib import Path

CAP_NET_ADMIN = 12

MISSING_MESSAGE = (
    "the router needs CAP_NET_ADMIN to change routes: run it as root, grant the capability"
    " (e.g. systemd AmbientCapabilities=CAP_NET_ADMIN, or setcap cap_net_admin+ep), or use"
    " --dry-run to only log what it would change"
)


class NetAdminMissing(PermissionError):
    """The process cannot change routes; the message names CAP_NET_ADMIN and the fixes."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{MISSING_MESSAGE}{f' ({detail})' if detail else ''}")


def effective_capabilities(status_text: str) -> int:
    """The CapEff bit mask from the text of /proc/<pid>/status (0 when absent)."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split(":", 1)[1].strip(), 16)
    return 0


def has_net_admin(status_path: Path = Path("/proc/self/status")) -> bool:
    """True when CAP_NET_ADMIN is in the effective set of this process."""
    try:
        text = status_path.read_text()
    except OSError:
        return False
    return bool(effective_capabilities(text) >> CAP_NET_ADMIN & 1)


def require_net_admin(status_path: Path = Path("/proc/self/status")) -> None:
    """Raise NetAdminMissing unless this process holds CAP_NET_ADMIN."""
    if not has_net_admin(status_path):
        raise NetAdminMissing("CAP_NET_ADMIN is not in the effective capability set")
