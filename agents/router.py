"""The route actuator: keeps a node's kernel routes in line with the path states.

For every service route whose next hop is on the node, the service's prefixes route over
the usable next hops (see `agents.routing.desired`). The truth is KV `pathwatch-paths`:
it is read whole at start and after every NATS reconnect, then watched; route commands
(`pw.cmd.route.<node>`) only make the router react sooner. Only routes of the router's
own protocol number in its own table are ever changed, with atomic replaces, and the
connection tracker is never touched. `dry_run` logs what would change and changes nothing.
Given a `LiveConfig`, a new config revision is applied at once (`reconfigure`: the routes
of the node and the service prefixes); the table, protocol, metric and dry-run setting
are kept until a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field

import msgspec
import nats.errors

from agents.routing.capability import NetAdminMissing, require_net_admin
from agents.routing.desired import DesiredState, desired_routes
from agents.routing.follower import CommandFollower
from agents.routing.kernel import KernelTable, RouteApplyError
from agents.routing.plan import Change, plan_changes
from pathwatch.runtime.aio import wait_any
from pathwatch.runtime.bus import Bus, PathStateFollower
from pathwatch.runtime.configsource import LiveConfig
from pathwatch.runtime.status import RoleCounters, publish_status
from pathwatch.runtime.supervise import start_supervised
from schemas.config import PathwatchConfig
from schemas.subjects import path_key
from schemas.wire import PathState, RouteCommand

log = logging.getLogger("pathwatch.router")

#: Routing protocol numbers the kernel and iproute2 reserve (redirect, kernel, boot,
#: static): a router using one of them would treat other routes as its own.
RESERVED_PROTOCOLS = range(0, 5)
#: Seconds between attempts to read KV when NATS is not reachable.
RESYNC_RETRY = 1.0
#: Config keys the router reads only at start (its kernel table and mode).
START_ONLY = ("router.table", "router.protocol", "router.metric", "router.dry_run")


class RouterError(RuntimeError):
    """The router cannot start (bad protocol number, missing capability, no namespace)."""


@dataclass
class RouterStats:
    """Counters of one router, for logs, tests and heartbeats."""

    reconciles: int = 0
    kv_resyncs: int = 0
    changes_applied: int = 0
    changes_skipped_dry_run: int = 0
    apply_errors: int = 0
    commands: int = 0
    commands_ignored: int = 0
    #: inputs dropped, by `<input>:<reason>` (published in the router's role status)
    malformed: Counter[str] = field(default_factory=Counter)
    #: supervised consumers started again after they ended
    restarts: Counter[str] = field(default_factory=Counter)


class Router:
    """One node's route actuator; `run(stop)` until `stop` is set."""

    def __init__(
        self,
        config: PathwatchConfig,
        bus: Bus,
        *,
        node: str,
        dry_run: bool = False,
        netns: str | None = None,
        live: LiveConfig | None = None,
    ) -> None:
        self.config = config
        self.live = live
        self.bus = bus
        self.node = node
        self.dry_run = dry_run or config.router.dry_run
        self.netns = netns
        self.stats = RouterStats()
        self._dirty = asyncio.Event()
        self._resync_needed = asyncio.Event()
        self._overrides: dict[str, PathState] = {}
        self._kv = PathStateFollower(
            bus, self._kv_changed, self._resync_needed.set, self.stats.malformed
        )
        self._have_snapshot = False
        #: desired routes the last reconcile applied without errors
        self._applied: DesiredState | None = None
        self._last_problems: tuple[str, ...] = ()
        self._last_dry_run: tuple[str, ...] = ()
        self._routes_on_node = self._routes_of_node(config)
        if live is not None:
            live.on_change(self.reconfigure)

    def _routes_of_node(self, config: PathwatchConfig) -> set[str]:
        return {
            path_key(service_name, route_name)
            for service_name, route_name, _, route in config.routes()
            if route.next_hop.node == self.node
        }

    def reconfigure(self, config: PathwatchConfig) -> None:
        """Take a new config: reconcile the node's routes against it at once."""
        self.config = config
        self._routes_on_node = self._routes_of_node(config)
        self._dirty.set()
        log.info("router %s: %d service routes on this node", self.node, len(self._routes_on_node))

    # --- inputs -----------------------------------------------------------

    def _kv_changed(self, key: str | None) -> None:
        if key is None:
            self._overrides.clear()
            self._have_snapshot = True
            self._applied = None  # a new snapshot: compare with the kernel again
        else:
            self._overrides.pop(key, None)
        self._dirty.set()

    def _command(self, command: RouteCommand) -> None:
        """A command is applied at once as a provisional state until KV says otherwise."""
        key = path_key(command.service, command.route)
        if key not in self._routes_on_node:
            self.stats.commands_ignored += 1
            log.debug("ignoring route command for %s: not a route of node %s", key, self.node)
            return
        current = self._overrides.get(key) or self._kv.states.get(key)
        if current is not None and command.ts < current.updated:
            self.stats.commands_ignored += 1
            return
        base = current or PathState(service=command.service, route=command.route)
        self._overrides[key] = msgspec.structs.replace(
            base,
            in_service=command.action == "restore",
            best_effort=command.best_effort,
            updated=command.ts,
            reason=command.reason,
        )
        self.stats.commands += 1
        log.info("route command %s %s (%s)", command.action, key, command.reason or "no reason")
        self._dirty.set()

    async def _on_reconnect(self) -> None:
        self._resync_needed.set()

    def effective_states(self) -> dict[str, PathState]:
        """KV states with the provisional command states on top."""
        return {**self._kv.states, **self._overrides}

    # --- actions ----------------------------------------------------------

    async def reconcile(self, table: KernelTable, *, force: bool = True) -> list[Change]:
        """Make the kernel table match the desired routes; returns the changes planned.

        Unless `force`, nothing is done when the desired routes are the ones the last
        reconcile applied without errors (a path state whose figures moved), and the
        kernel's routes come from the notification-fed state; `force` dumps them again."""
        desired = desired_routes(self.config, self.node, self.effective_states())
        if not force and desired == self._applied:
            return []
        if force:
            await table.refresh()  # compare with the kernel itself, not the notifications
        self._applied = None
        wanted, resolve_problems = await table.resolve(desired.routes)
        plan = plan_changes(wanted, await table.installed(own_only=True), protocol=table.protocol)
        if any(change.action == "replace" for change in plan.changes):
            # a replace could overwrite a route of another protocol: look at the whole table
            plan = plan_changes(wanted, await table.installed(), protocol=table.protocol)
        self._report_problems((*desired.problems, *resolve_problems, *plan.conflicts))
        self.stats.reconciles += 1
        if self.dry_run:
            described = tuple(change.describe() for change in plan.changes)
            if described != self._last_dry_run:
                for line in described:
                    log.info("dry-run: would %s", line)
                self._last_dry_run = described
            self.stats.changes_skipped_dry_run += len(plan.changes)
            return list(plan.changes)
        failed = False
        for change in plan.changes:
            try:
                await table.apply(change)
            except RouteApplyError as exc:
                self.stats.apply_errors += 1
                failed = True
                log.error("route change failed: %s", exc)
                continue
            self.stats.changes_applied += 1
            log.info("route %s", change.describe())
        if not failed and not resolve_problems:
            self._applied = desired
        return list(plan.changes)

    def _report_problems(self, problems: tuple[str, ...]) -> None:
        if problems != self._last_problems:
            for problem in problems:
                if problem not in self._last_problems:
                    log.warning("router %s: %s", self.node, problem)
            self._last_problems = problems

    async def _resync(self) -> bool:
        """Re-read KV from scratch; False (and logged) when NATS cannot answer."""
        try:
            await self._kv.resync()
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            log.warning("router %s: cannot read %s yet: %s", self.node, "pathwatch-paths", exc)
            return False
        self.stats.kv_resyncs += 1
        return True

    # --- main loop ------------------------------------------------------------

    def _check_start(self) -> None:
        protocol = self.config.router.protocol
        if protocol in RESERVED_PROTOCOLS:
            raise RouterError(
                f"router.protocol {protocol} is reserved by the kernel (0-4);"
                " pick a number of its own (default 199)"
            )
        if not self.dry_run:
            require_net_admin()

    async def _open_table(self) -> KernelTable:
        settings = self.config.router
        try:
            return await KernelTable.open(
                table=settings.table,
                protocol=settings.protocol,
                metric=settings.metric,
                netns=self.netns,
            )
        except OSError as exc:
            where = f"network namespace {self.netns!r}" if self.netns else "netlink"
            raise RouterError(f"cannot open {where}: {exc}") from exc

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile from KV, follow it and the commands, until `stop` is set."""
        self._check_start()
        table = await self._open_table()
        self.bus.reconnect_callbacks.append(self._on_reconnect)
        commands = CommandFollower(self.bus, self.node, self._command, self.stats.malformed)
        role = RoleCounters(
            "router", self.node, self.stats.malformed, self.stats.restarts, live=self.live
        )
        side_tasks = [
            start_supervised("router-commands", lambda: commands.run(stop), stop, role.restarts),
            start_supervised(
                "router-status", lambda: publish_status(self.bus, role, stop), stop, role.restarts
            ),
        ]
        log.info(
            "router %s: table %d, protocol %d, mode %s%s%s",
            self.node,
            self.config.router.table,
            self.config.router.protocol,
            self.config.router.mode,
            ", dry-run" if self.dry_run else "",
            f", netns {self.netns}" if self.netns else "",
        )
        self._resync_needed.set()
        try:
            await self._loop(stop, table)
        finally:
            with contextlib.suppress(ValueError):
                self.bus.reconnect_callbacks.remove(self._on_reconnect)
            for task in side_tasks:
                task.cancel()
            await asyncio.gather(*side_tasks, return_exceptions=True)
            await self._kv.stop()
            table.close()

    async def _loop(self, stop: asyncio.Event, table: KernelTable) -> None:
        interval = self.config.router.resync_interval
        while not stop.is_set():
            if self._resync_needed.is_set():
                self._resync_needed.clear()
                if not await self._resync():
                    self._resync_needed.set()
            if self._have_snapshot:
                # woken by a change: the kernel is read only if the desired routes moved;
                # the periodic resync always compares with the kernel
                changed = self._dirty.is_set()
                self._dirty.clear()
                await self.reconcile(table, force=not changed)
            wait_for = RESYNC_RETRY if self._resync_needed.is_set() else interval
            await wait_any((stop, self._dirty, self._resync_needed), wait_for)


async def run_router(
    config: PathwatchConfig,
    bus: Bus,
    *,
    stop: asyncio.Event,
    node: str,
    dry_run: bool = False,
    netns: str | None = None,
    live: LiveConfig | None = None,
) -> None:
    """Run the route actuator of `node` until `stop` is set (see docs/router.md); with
    `live`, it follows every new revision of the config.

    Raises RouterError (or NetAdminMissing, a PermissionError) when it cannot start.
    """
    await Router(config, bus, node=node, dry_run=dry_run, netns=netns, live=live).run(stop)


__all__ = ["START_ONLY", "NetAdminMissing", "Router", "RouterError", "RouterStats", "run_router"]
