"""Without topics, the seed's model: `/session NAME` turns to a session, and its agent,
suspended while idle, starts at once (not at the next message)."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from supervisor.chat.telegram.active import newest_named
from supervisor.chat.telegram.memory import Memory, ThreadInfo, keep_newest
from supervisor.core.events import TurnedTo
from supervisor.core.router import Ignore, RouterView, SessionRef, Wake, route
from tests.telegram_world import FAST, TgWorld, started_tg_world, tg_world


def agent_events(w: TgWorld, kind: str) -> list[dict[str, object]]:
    found = []
    for path in sorted(w.agent_log.glob("*.jsonl")):
        for raw in path.read_text().splitlines():
            line = json.loads(raw)
            if line.get("event") == kind:
                found.append(line)
    return found


async def test_switching_to_a_session_whose_agent_is_suspended_starts_it_at_once(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        async with tg_world(tmp_path, topics=False) as w:
            w.configure(telegram=FAST, agent={"idle_suspend_s": 1})
            await w.start()
            await w.new_sessions_without_topics("a", "b")
            await w.wait_for(lambda: len(agent_events(w, "start")) == 2)
            # Idle for a second: both agents are suspended (stopped, not the sessions).
            await w.wait_for(lambda: len(agent_events(w, "exit")) == 2, timeout=20)
            w.say("/session a")
            await w.answered(None, "Plain text now goes to a.")
            starts = await w.wait_for(lambda: len(agent_events(w, "start")) == 3 and agent_events(w, "start"), timeout=10)
            assert starts[-1]["cwd"] == str(w.work / "a")  # a's agent, and only a's
            assert w.prompts_by_process() == {}  # started by the switch, not by a prompt
            w.say("/session nope")  # no such session: nothing starts
            await w.answered(None, "There is no session nope")
            await trio.sleep(0.5)
            assert len(agent_events(w, "start")) == 3


def test_the_router_wakes_only_a_live_session_an_allowed_person_turned_to() -> None:
    live, ended = SessionRef("r1", "c1"), SessionRef("r2", "c1", ended=True)
    view = RouterView("bot", frozenset({"alice"}), {"r1": live, "r2": ended}, places=frozenset({"c1"}))
    assert route(TurnedTo("alice", "c1", "r1"), view) == Wake(live)
    assert isinstance(route(TurnedTo("mallory", "c1", "r1"), view), Ignore)
    assert isinstance(route(TurnedTo("alice", "c1", "r2"), view), Ignore)  # ended
    assert isinstance(route(TurnedTo("alice", "c2", "r1"), view), Ignore)  # not her place
    assert isinstance(route(TurnedTo("alice", "c1", "nope"), view), Ignore)


async def test_sessions_marks_the_active_one_below_the_list(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with started_tg_world(tmp_path, topics=False) as w:
            await w.new_sessions_without_topics("a", "b")
            w.say("/session a")
            await w.answered(None, "Plain text now goes to a.")
            w.say("/sessions")
            await w.answered(None, "Plain text goes to a (")
            texts = [s.message.get("text", "") for s in w.said(None)]
            listed = max(i for i, t in enumerate(texts) if "idle" in t and "b" in t)
            assert texts[listed + 1].startswith("▶ Plain text goes to a")  # right below the list
            w.say("/session b")
            await w.answered(None, "Plain text now goes to b.")
            w.say("/SESSIONS")
            await w.answered(None, "Plain text goes to b (")


async def test_a_name_used_again_after_its_session_ended_switches_to_the_new_one(tmp_path: Path) -> None:
    """The front end keeps every thread it made, ended ones too: `/session a` after `/end a`
    and a new `a` turned to the ended one (the oldest of that name), so plain text could
    not reach the new `a` by its name."""
    with trio.fail_after(60):
        async with started_tg_world(tmp_path, topics=False) as w:
            await w.new_sessions_without_topics("a")
            w.say("/end a")
            await w.answered(None, "ended")
            (w.work / "a2").mkdir()
            w.say(f"/new a {w.work / 'a2'}")
            await w.wait_for(lambda: w.text(None).count("Started session a") == 2)
            await w.new_sessions_without_topics("b")  # now the active one
            w.say("/session a")
            await w.answered(None, "Plain text now goes to a.")
            w.say("still there?")
            await w.answered(None, "echo #1: still there?")
            assert "has ended" not in w.text(None)


async def test_the_newest_session_of_a_name_is_still_the_newest_after_a_restart(tmp_path: Path) -> None:
    """The file keeps its threads in text order ("tg:7:100" before "tg:7:99"), not in the
    order they were made: the newest is told by its header's message id."""
    memory = Memory.open(tmp_path)
    for root in ("tg:7:99", "tg:7:100"):  # the ended `a`, then the new one
        memory.threads[root] = ThreadInfo(chat_id=7, title="a")
    memory.changed()
    await memory.commit()
    assert newest_named(memory, 7, "a") == "tg:7:100"
    assert newest_named(Memory.open(tmp_path), 7, "a") == "tg:7:100"
    assert newest_named(memory, 8, "a") is None and newest_named(memory, 7, "b") is None


async def test_what_telegram_json_keeps_comes_back_in_the_order_it_came(tmp_path: Path) -> None:
    """Written with sorted keys, a reload put "tg:7:100" before "tg:7:99": the bounded
    lists then dropped their newest entries first, and a name's newest opened topic was no
    longer its last."""
    memory = Memory.open(tmp_path)
    for message_id in (98, 99, 100, 101):
        memory.remember_root(f"tg:7:{message_id}", "tg:7:1")
    await memory.commit()
    again = Memory.open(tmp_path)
    assert list(again.roots) == ["tg:7:98", "tg:7:99", "tg:7:100", "tg:7:101"]
    keep_newest(again.roots, 2)
    assert list(again.roots) == ["tg:7:100", "tg:7:101"]
