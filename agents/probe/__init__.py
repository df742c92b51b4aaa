"""Probe kinds of the agent: one module per kind, all with the signature of
`agents.probe.base` (`(target, profile, deadline) -> list[Measurement]`).

icmp (shared-socket engine in icmp_engine), tcp, tls, http, udp, link
(rtnetlink watcher publishing fast evidence), liveness (datapath liveness
check for healers); registry finds built-in kinds and plugins of the
entry-point group `pathwatch.probes`.
"""
