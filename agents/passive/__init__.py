"""Passive learning from conntrack: sessions of real traffic become measurements.

`events` decodes ctnetlink event messages, `follower` reads them from the
kernel (host or a named namespace), `icmp_errors` catches ICMP unreachable
errors for tracked flows, `classifier` maps a flow to (service, route,
traffic class, destination), `tracker` turns events into session outcomes
(pure and clock-injected), and `rounds` pre-aggregates them per route and
round. `agents.passive.source.PassiveSource` puts them together for the agent.
"""
