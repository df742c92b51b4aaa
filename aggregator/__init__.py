"""The aggregator: folds measurements into per-lane window statistics.

Modules: `stats` (lane statistics), `lanes` (which lanes a window reports),
`windows` (tumbling windows per route), `ingest` (decoding and drop counting),
`dedupe`, `skew`, `fastpath`, `partition`, `history` (SQLite), `metrics`
(Prometheus) and `service` (the NATS-facing coroutine `run_aggregator`).
"""
