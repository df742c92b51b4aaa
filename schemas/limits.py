"""Every bound pathwatch puts on what grows with its input, in one place.

docs/internals.md ("Bounds") lists these constants; tests/test_limits_doc.py
fails when the table and this module disagree. Each bound says what happens
when it is reached: refused (and counted by reason), trimmed, evicted or cut off.
"""

from __future__ import annotations

import resource

# --- messages ----------------------------------------------------------------

#: Largest message any consumer decodes, in bytes (NATS's default `max_payload`);
#: a larger one is refused with reason `size`. Also the largest HTTP request body.
MAX_MESSAGE_BYTES = 1 << 20
#: JSON nested deeper than this is refused with reason `depth`. msgspec recurses
#: once per level against Python's recursion limit (1,000 frames) and raises
#: RecursionError, which the codec turns into `depth`; no message of the
#: contract nests deeper than 6, so the interpreter's limit is the bound.
MAX_NESTING_DEPTH = 1000
#: Free text taken from input (evidence `detail`, probe-state `reason`) is cut
#: to this many characters, with an ellipsis, before it is used.
MAX_TEXT_CHARS = 1024
#: A route's `reason` in its PathState (it joins the reasons of lanes and probes).
MAX_REASON_CHARS = 4096
#: `destination` and `probe` of a measurement: longer ones refuse the batch (`schema`).
MAX_LABEL_CHARS = 512
#: Event times (batch `sent`, evidence and heartbeat `ts`, probe-state `set_at`)
#: further than this from the receiver's clock are refused with reason `clock`.
MAX_CLOCK_OFFSET_S = 86400.0
#: Window, path-state and alarm messages are kept under the server's max payload
#: (`nc.max_payload`) less this headroom for headers: per-destination lanes and
#: then lane metrics are trimmed (counted as `trimmed`), never published too big.
PAYLOAD_HEADROOM_BYTES = 4096

# --- lanes -------------------------------------------------------------------

#: Per route and window, fine lanes whose (probe, destination) the config does
#: not name; further ones are folded into the (protocol, class, source) aggregate
#: and counted as `lane-limit` (their measurements still count there).
MAX_UNLISTED_LANES = 32

#: Agents a window lists (`WindowStats.agents`); further ones are not listed.
MAX_WINDOW_AGENTS = 256

# --- caches and per-agent tables ---------------------------------------------

#: Subjects the aggregator remembers the partition answer of; cleared when full.
SUBJECT_CACHE_ENTRIES = 65536
#: Agents the aggregator's duplicate and skew tables and the enforcer's liveness
#: table hold; the least recently heard agent is evicted first.
MAX_AGENTS = 4096
#: Agents of one node (by the node their first heartbeat names) the enforcer tracks;
#: further names are refused (`node-full`), so made-up names raise few alarms.
MAX_AGENTS_PER_NODE = 16
#: (agent, seq) pairs the duplicate filter remembers in all (least recent agent evicted).
MAX_DEDUPE_ENTRIES = 262144
#: A heartbeat of one agent name is taken at most this often (seconds); others: `rate`.
HEARTBEAT_MIN_INTERVAL_S = 0.5
#: An agent-lost alarm is raised for one agent name at most this often (seconds).
AGENT_ALARM_MIN_INTERVAL_S = 300.0
#: Alarm updates (a down machine's new reason) of one machine at most this often, by the
#: enforcer's clock: evidence that keeps changing cannot flood the alarm stream and the
#: notifiers (the state in KV still shows every new reason at once).
ALARM_UPDATE_MIN_INTERVAL_S = 1.0
#: Alarms the API and the metrics exporter keep in their caches (the least
#: recently updated is evicted).
MAX_ALARMS = 10000
#: Clock-skew alarms raised at once by one aggregator; further ones are refused and
#: counted (`skew-alarm-limit`), so made-up agent names cannot flood the alarm stream.
MAX_SKEW_ALARMS = 64
#: Role instances whose status (drop counters) the metrics exporter shows.
MAX_STATUS_SOURCES = 256
#: Counters one role status may carry; more are refused with reason `schema`.
MAX_STATUS_COUNTERS = 512

# --- HTTP servers (API and /metrics) ------------------------------------------

#: Open connections one HTTP server keeps at most (past it the oldest one not being
#: answered is closed), and never more than an eighth of the process's file limit
#: (`http_connection_limit`: two servers stay under a quarter of it, with room for
#: the connections a burst has accepted and not yet closed).
MAX_HTTP_CONNECTIONS = 256
#: Seconds a client has to send a whole request head (and, for /metrics, the
#: request) before its connection is closed.
HTTP_HEADER_TIMEOUT_S = 5.0
#: Open files the shipped systemd units allow (`LimitNOFILE`).
SYSTEMD_NOFILE = 65536

# --- consumers -----------------------------------------------------------------

#: Seconds a supervised consumer waits before it is started again, doubling up to
#: `SUPERVISOR_MAX_BACKOFF_S` while it keeps ending.
SUPERVISOR_BACKOFF_S = 0.1
#: The longest wait before a supervised consumer that keeps ending is started again.
SUPERVISOR_MAX_BACKOFF_S = 5.0
#: Seconds between two status messages of a role (its drop and restart counters).
STATUS_INTERVAL_S = 5.0


def clip(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`text`, cut to `limit` characters (the last one an ellipsis) when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def http_connection_limit() -> int:
    """Connections one HTTP server keeps: `MAX_HTTP_CONNECTIONS`, at most an eighth
    of the soft file limit (two servers and NATS, SQLite and logs share it)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_HTTP_CONNECTIONS
    return max(4, min(MAX_HTTP_CONNECTIONS, soft // 8))
