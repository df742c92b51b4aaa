"""Subject names, stream names and KV bucket names of the wire contract."""

from schemas.names import is_subject_safe

MEAS_PREFIX = "pw.meas"
STATS_PREFIX = "pw.stats"
FAST_PREFIX = "pw.fast"
EVENT_PREFIX = "pw.event"
ALARM_PREFIX = "pw.alarm"
CMD_ROUTE_PREFIX = "pw.cmd.route"
CMD_HEAL_PREFIX = "pw.cmd.heal"
LB_SELECT_PREFIX = "pw.lb.select"
HEARTBEAT_PREFIX = "pw.agent.hb"
STATUS_PREFIX = "pw.status"
DEADLETTER_PREFIX = "pw.deadletter"

MEAS_ALL = "pw.meas.*.*"
STATS_ALL = "pw.stats.*.*"
FAST_ALL = "pw.fast.*.*"
EVENT_ALL = "pw.event.>"
ALARM_ALL = "pw.alarm.>"
CMD_ALL = "pw.cmd.>"
HEARTBEAT_ALL = "pw.agent.hb.*.*"
STATUS_ALL = "pw.status.*.*"
DEADLETTER_ALL = "pw.deadletter.*"

STREAM_EVENTS = "PATHWATCH_EVENTS"
STREAM_ALARMS = "PATHWATCH_ALARMS"
STREAM_COMMANDS = "PATHWATCH_COMMANDS"
STREAM_DEAD_LETTERS = "PATHWATCH_DEAD_LETTERS"
KV_PATHS = "pathwatch-paths"
KV_PROBES = "pathwatch-probes"
KV_LEASES = "pathwatch-leases"
#: Revisions of the fleet's configs (`ConfigRecord`), one key per config name.
KV_CONFIG = "pathwatch-config"
#: Key of the active enforcer's `EnforcerLease` in KV_LEASES.
LEASE_ENFORCER = "enforcer"

#: Pseudo-service of alarms about pathwatch itself (agent lost, clock skew);
#: config refuses service names that start with `_`.
SYSTEM_SERVICE = "_system"


def _token(name: str) -> str:
    if not is_subject_safe(name):
        raise ValueError(f"{name!r} is not subject-safe (letters, digits, '_' and '-' only)")
    return name


def meas(service: str, route: str) -> str:
    return f"{MEAS_PREFIX}.{_token(service)}.{_token(route)}"


def stats(service: str, route: str) -> str:
    return f"{STATS_PREFIX}.{_token(service)}.{_token(route)}"


def fast(service: str, route: str) -> str:
    return f"{FAST_PREFIX}.{_token(service)}.{_token(route)}"


def event(service: str, route: str) -> str:
    return f"{EVENT_PREFIX}.{_token(service)}.{_token(route)}"


def alarm(service: str, route: str) -> str:
    return f"{ALARM_PREFIX}.{_token(service)}.{_token(route)}"


def system_alarm(agent: str) -> str:
    """Subject of an alarm about an agent (agent-lost, clock-skew)."""
    return f"{ALARM_PREFIX}.{SYSTEM_SERVICE}.{_token(agent)}"


def cmd_route(node: str) -> str:
    return f"{CMD_ROUTE_PREFIX}.{_token(node)}"


def cmd_heal(service: str, route: str) -> str:
    return f"{CMD_HEAL_PREFIX}.{_token(service)}.{_token(route)}"


def lb_select(service: str) -> str:
    return f"{LB_SELECT_PREFIX}.{_token(service)}"


#: The node token of the heartbeat of an agent that probes every node's routes (node "").
ALL_NODES = "_all"


def heartbeat(node: str, agent: str) -> str:
    """`pw.agent.hb.<node>.<agent>`: the node in the subject lets the server bind a node's
    NATS user to its own node's heartbeats (accounts.conf); receivers check the payload
    against it (`heartbeat_matches`)."""
    return f"{HEARTBEAT_PREFIX}.{_token(node or ALL_NODES)}.{_token(agent)}"


def heartbeat_matches(subject: str, node: str, agent: str) -> bool:
    """Whether a heartbeat naming `node` and `agent` came on their own subject."""
    return subject == f"{HEARTBEAT_PREFIX}.{node or ALL_NODES}.{agent}"


def status(role: str, instance: str) -> str:
    """Subject of a role instance's drop and restart counters (`RoleStatus`)."""
    return f"{STATUS_PREFIX}.{_token(role)}.{_token(instance)}"


def deadletter(notifier: str) -> str:
    """Subject of the alarm messages notifier `notifier` gave up on (`DeadLetter`)."""
    return f"{DEADLETTER_PREFIX}.{_token(notifier)}"


def path_key(service: str, route: str) -> str:
    """Key of a route in the `pathwatch-paths` KV bucket."""
    return f"{_token(service)}.{_token(route)}"


def split_path_key(key: str) -> tuple[str, str]:
    service, _, route = key.partition(".")
    return service, route


def tokens(subject: str) -> list[str]:
    return subject.split(".")
