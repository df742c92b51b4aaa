"""The runtime below the components: what agents, the aggregator and the enforcer
run on, and nothing that knows them.

The NATS connection and JetStream set-up (`bus`), the embedded nats-server
(`embedded`), heap settling after start (`heap`), live config from files and
the KV bucket (`configsource`, `configstore`, `configfile` and its parsers),
role status and fleet reports (`status`, `fleet`), supervised tasks
(`supervise`), the bounded HTTP server of /metrics and /readyz
(`metrics_http`, `httpbounds`, `listen`, `readiness`) and small asyncio helpers
(`aio`). It imports `schemas` and itself only (import-linter checks it); the
CLI and the benches live above it in `pathwatch`.
"""
