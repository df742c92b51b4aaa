"""Client-side healing (DESIGN.md, "Healing" and "Datapath healing").

`decision` is the pure decision table with backoff; `settings` reads the
liveness settings; `monitor` watches the client's path state and the control
plane; `liveness` runs the datapath check; `reselect` asks the load balancer;
`hooks` repoints the client's route; `netns` runs work inside a namespace;
`healer` wires them into `run_healer`.
"""
