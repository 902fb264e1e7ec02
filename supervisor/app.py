"""The nursery tree: the whole architecture, top-down, in one place.

    run(config)                       SIGINT/SIGTERM/SIGHUP -> graceful shutdown (all within
    │                                 10 s); one that comes while starting ends the start
    └── serve(config)                 holds state.dir (one supervisor per state); the app nursery
        ├── open_one                  one per configured front end, at once (chat/registry.py):
        │                             connects it and learns its people, then ends
        ├── store.run                 persistence actor: the only writer of sessions.json and its journal
        ├── open_sessions             the sessions nursery (the registry needs it to exist)
        │   └── SessionTask.run       one per thread, its own cancel scope (runtime/registry.py
        │       │                     registers and launches them, and stops them all)
        │       ├── Poster.run        the thread's outbox -> its front end (runtime/poster.py)
        │       ├── _typing           "typing…" when due: cosmetic, so never in the turn's way
        │       ├── _fetch_files      a held prompt's attachments, saved beside the running turn
        │       └── agent             one agent process (own process group): Claude Code or ACP
        ├── desk.run                  main-place commands and replies, in order per place
        │   └── Desk._serve           one per place: one front end's outage holds up no other
        │                             (runtime/desk.py; its rules are core/desk.py)
        ├── router.run                events of every front end -> pure router -> sessions /
        │   │                         desk; admits each post once (runtime/router.py)
        │   └── _catch_up             one per front end after its new connection: fetches its
        │                             missed posts and sends them back to the router, while
        │                             the other front ends' events go on
        ├── front.run                 one per open front end: its event stream (Mattermost's
        │                             WebSocket, Telegram's long poll, the web chat's HTTP
        │                             server and page sockets)
        └── _join_late                the front ends opened after the start join, one by one

Start order: every front end is opened at once (`open_fronts`: connected, its people
known; one whose server keeps silent starts as who it was at the last start,
chat/identity.py, and is caught up once it answers; one with nothing remembered joins
once its server answers, `_join_late`, while the others serve); then the store, then the
sessions nursery; only then can the Supervisor (the registry, desk and router of this
run, wired in runtime/supervisor.py) be built (its registry takes the nursery), so
restoring sessions and finishing announcements a crash cut short
(`Desk.recover_unannounced`) always have somewhere to start sessions. Both happen before
that front end's events flow, so its first catch-up finds every thread's session; a front
end with announcements to finish asks its server first, in a task of its own
(`_recover_then_run`), so a server that keeps silent holds up no other front end.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
from collections.abc import AsyncIterator, Mapping, Sequence

import trio

from supervisor import stop_signals
from supervisor.agent.registry import AgentRegistry
from supervisor.chat import ChatUser
from supervisor.chat.fronts import FrontEnd, Fronts
from supervisor.chat.registry import Opener, Placed, configured_openers, open_fronts
from supervisor.config import Config
from supervisor.logs import one_line
from supervisor.runtime.desk import Desk
from supervisor.runtime.reaper import reap
from supervisor.runtime.registry import STOP_BUDGET_S, SessionsNursery, open_sessions
from supervisor.runtime.router import RouterEvent
from supervisor.runtime.store import Store, held
from supervisor.runtime.supervisor import Supervisor

log = logging.getLogger("supervisor")

LINK_CLOSE_S = 0.5  # part of the 10 s a stop may take, after `Supervisor.shutdown`
FIRST = 0  # the first configured front end's place: `[[sessions]]` threads are made there


async def serve(
    config: Config,
    *,
    base_env: Mapping[str, str] | None = None,
    front_ends: Sequence[Opener] | None = None,
    task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Connect and serve until cancelled; `started()` hands out the Supervisor. The front
    ends are the configured ones unless `front_ends` names others (tests do). Refused
    (StateDirInUse) while another supervisor runs on the same state directory."""
    with held(config.state.dir):
        await _serve(config, base_env, front_ends, task_status)


async def _serve(
    config: Config,
    base_env: Mapping[str, str] | None,
    front_ends: Sequence[Opener] | None,
    task_status: trio.TaskStatus[Supervisor],
) -> None:
    store = Store.open(config.state.dir)
    recorded = {r.pgid for r in store.state.sessions.values() if r.pgid}
    reaped = await trio.to_thread.run_sync(reap, config.state.dir, recorded)
    if reaped:
        log.warning("ended %d agent process group(s) left by a previous run", len(reaped))
    # Every front end sends its events through a clone of `events_send`; the router keeps
    # the original for its catch-ups to report through.
    events_send, events_recv = trio.open_memory_channel[RouterEvent](1000)
    openers = front_ends or configured_openers(config)
    opened: list[Placed] = []  # every front end open so far: closed however this ends
    late_send, late_recv = trio.open_memory_channel[Placed](len(openers))
    try:
        async with trio.open_nursery() as app:
            at_start = await open_fronts(config, events_send, openers, app, opened, late_send)
            chat = Fronts([front for _place, front in at_start], [place for place, _front in at_start])
            allowed, main_channels = await _people(chat.fronts)
            store.on_durable_handled = chat.handled
            await app.start(store.run)
            sessions: SessionsNursery = await app.start(open_sessions)
            agents = AgentRegistry(config)  # every configured agent's backend, one place
            supervisor = Supervisor(
                config,
                chat,
                store,
                agents.default.backend,
                allowed,
                main_channels,
                os.environ if base_env is None else base_env,
                sessions,
                agents,
            )
            registry, desk, router = supervisor.registry, supervisor.desk, supervisor.router
            store.on_refusing = desk.state_refused
            registry.restore_sessions()
            app.start_soon(desk.run)
            app.start_soon(router.run, events_recv, events_send)
            for front in chat.fronts:  # each one's first event is a hello: the router catches up
                if desk.unannounced(front):  # asks its server, which may keep silent: none waits
                    app.start_soon(_recover_then_run, desk, front)
                else:
                    await app.start(front.run)
            # What exists now (code, config, restored sessions) lives as long as we do:
            # keep it out of the collector's full scans, which otherwise pause routing.
            gc.freeze()
            names = ", ".join(user.username for user in allowed.values())
            log.info("serving %d session(s) for %s", len(registry.tasks), names)
            task_status.started(supervisor)
            app.start_soon(_join_late, app, supervisor, late_recv)
            if chat.has(FIRST):
                # Serving already: a new one's thread waits for its server, which may keep
                # silent at start, and a stop meanwhile is a graceful one.
                await desk.create_configured_sessions()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(LINK_CLOSE_S):
            for _place, front in opened:
                await front.aclose()


async def _recover_then_run(desk: Desk, front: FrontEnd) -> None:
    """`front` serves once the announcements a crash cut short there are finished: replies
    already written under such a thread must reach its session at the catch-up."""
    await desk.recover_unannounced(front)
    await front.run()


async def _join_late(app: trio.Nursery, supervisor: Supervisor, late: trio.MemoryReceiveChannel[Placed]) -> None:
    """Each front end whose server answered only after the start joins, on its own."""
    async for place, front in late:
        app.start_soon(_join, app, supervisor, place, front)


async def _join(app: trio.Nursery, supervisor: Supervisor, place: int, front: FrontEnd) -> None:
    """The front end serves from now on, as if from the start (`Supervisor.join`); its
    first event is a hello: the router catches it up. `[[sessions]]` threads, which live
    in the first one, are made once it is here. Left out while stopping (the next start
    serves it), or when its people cannot be learnt (said once)."""
    if _stopping(supervisor, front):
        return
    try:
        await supervisor.join(front, place)
    except Exception as exc:  # before it changed anything: the others go on
        log.error("%s answered late but cannot serve: %s; the next start tries it again", front.name, one_line(exc))
        return
    if _stopping(supervisor, front):  # the stop began during the join's requests
        return
    await app.start(front.run)
    if place == FIRST:
        app.start_soon(supervisor.desk.create_configured_sessions)


def _stopping(supervisor: Supervisor, front: FrontEnd) -> bool:
    if supervisor.registry.stopping:
        log.info("%s answered during the stop: the next start serves it", front.name)
    return supervisor.registry.stopping


async def _people(fronts: Sequence[FrontEnd]) -> tuple[dict[str, ChatUser], dict[str, str]]:
    allowed: dict[str, ChatUser] = {}
    main_channels: dict[str, str] = {}
    for front in fronts:
        people = await front.people()
        allowed |= people.allowed
        main_channels |= people.main_channels
    return allowed, main_channels


async def run(config: Config) -> None:
    """The main job: serve until SIGINT/SIGTERM (or SIGHUP: its terminal closed), then stop
    cleanly within 10 s. A signal while still starting (a chat server that does not answer
    yet, at boot) ends the start; one that came before this listened was held for it
    (`stop_signals`), so it is received here too."""
    with trio.open_signal_receiver(*stop_signals.STOP_SIGNALS) as signals:
        stop_signals.release()  # held since the command began: one that came is received now
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, signals, stop)
            supervisor = await _start_unless_stopped(nursery, config, stop)
            if supervisor is not None:
                await stop.wait()
                deadline = trio.current_time() + STOP_BUDGET_S
                # Bounded by its deadline already; the scope is a last guard, not the plan.
                with trio.move_on_at(deadline + 0.5):
                    await supervisor.shutdown(deadline)
            nursery.cancel_scope.cancel()
    log.info("stopped")


async def _stop_on_signal(signals: AsyncIterator[int], stop: trio.Event) -> None:
    async for signum in signals:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()
        return


async def _start_unless_stopped(nursery: trio.Nursery, config: Config, stop: trio.Event) -> Supervisor | None:
    """`serve` started in `nursery`; None when `stop` came first (its start is then
    cancelled: every step of it is cancel-safe, and nothing is lost that a crash keeps)."""
    started: list[Supervisor] = []
    async with trio.open_nursery() as race:

        async def start() -> None:
            started.append(await nursery.start(serve, config))
            race.cancel_scope.cancel()

        async def stopped() -> None:
            await stop.wait()
            race.cancel_scope.cancel()

        race.start_soon(start)
        race.start_soon(stopped)
    return started[0] if started else None
