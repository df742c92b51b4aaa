"""Deterministic identities of events, alarms and commands.

Every id is built from the evidence (names and the instant of the transition),
so two enforcers fed the same input name the same thing the same way, and
JetStream's `Nats-Msg-Id` de-duplication drops the second copy.
"""


def millis(ts: float) -> int:
    return round(ts * 1000)


def alarm_id(
    service: str, route: str, protocol: str | None, traffic_class: str | None, cause: str, at: float
) -> str:
    return f"{service}.{route}.{protocol or '-'}.{traffic_class or '-'}.{cause}@{millis(at)}"


def agent_alarm_id(agent: str, at: float) -> str:
    return f"_system.{agent}.agent-lost@{millis(at)}"


def event_id(service: str, route: str, kind: str, at: float) -> str:
    return f"{service}.{route}.{kind}@{millis(at)}"


def command_id(service: str, route: str, action: str, at: float) -> str:
    return f"{service}.{route}.{action}@{millis(at)}"


def msg_id(message_id: str, status: str = "") -> str:
    """The `Nats-Msg-Id` header: the id plus the status for alarms (raise and clear differ)."""
    return f"{message_id}:{status}" if status else message_id


def alarm_update_msg_id(alarm_id: str, at: float) -> str:
    """The `Nats-Msg-Id` of an update of a raised alarm (a new reason) made at `at`."""
    return f"{alarm_id}:updated@{millis(at)}"
