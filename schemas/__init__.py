"""The pathwatch contract: msgspec types for config, wire messages and state.

This package depends on nothing else of pathwatch. Every component speaks only
through the types and subject names defined here.
"""

from schemas.codec import DecodeError, decode_message, encode
from schemas.names import NAME_PATTERN, is_subject_safe
from schemas.wire import (
    SCHEMA_VERSION,
    AgentHeartbeat,
    Alarm,
    FastEvidence,
    HealCommand,
    Lane,
    LaneState,
    LaneStats,
    LbSelectReply,
    LbSelectRequest,
    Measurement,
    MeasurementBatch,
    PathEvent,
    PathState,
    ProbeState,
    ProbeStatus,
    RouteCommand,
    WindowStats,
)

__all__ = [
    "NAME_PATTERN",
    "SCHEMA_VERSION",
    "AgentHeartbeat",
    "Alarm",
    "DecodeError",
    "FastEvidence",
    "HealCommand",
    "Lane",
    "LaneState",
    "LaneStats",
    "LbSelectReply",
    "LbSelectRequest",
    "Measurement",
    "MeasurementBatch",
    "PathEvent",
    "PathState",
    "ProbeState",
    "ProbeStatus",
    "RouteCommand",
    "WindowStats",
    "decode_message",
    "encode",
    "is_subject_safe",
]
