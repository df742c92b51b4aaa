"""The route actuator's parts: desired-state computation (`desired`), the kernel diff
(`plan`), the pyroute2 applier (`kernel`), the CAP_NET_ADMIN check (`capability`) and
the NATS side that follows path state and route commands (`follower`).

`agents.router.run_router` wires them together.
"""
