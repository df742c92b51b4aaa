"""`pathwatch notifier`: pushes raised and cleared alarms to Alertmanager and webhooks.

One durable JetStream consumer per configured notifier reads `PATHWATCH_ALARMS`
and hands each alarm, in stream order, to its receiver (`alertmanager`,
`webhook`), retrying with backoff (`retry`) until the receiver takes it, and
dead-letters what the receiver refuses (`deadletter`). `service` runs them all;
`metrics` counts what happened. docs/notifier.md is the user's guide.
"""
