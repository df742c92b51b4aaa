"""The enforcer: judges windows, runs the path state machine, raises alarms,
selects routes and commands routers and healers; plus the REST API."""
