"""ACP agents behind threads, end to end: the fake Mattermost, the supervisor, and the fake
ACP agent (tests/fakes/fake_acp_agent.py, a real child process speaking OpenCode's frames).

What these show: `!new NAME agent=fake` opens a thread on an ACP agent whose conversation
id (the agent's choice) is recorded before the first prompt; prompts are answered in the
thread; permission requests are answered from reactions (allow once, deny, allow always,
remembered across a relaunch of the agent); `!stop` cancels a turn; the conversation is
continued (`session/resume`) after `kill -9` of the agent and of the supervisor; an agent
that speaks another protocol version is said plainly in its thread.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path
from typing import Any

import trio

from supervisor.core.state import SessionRecord
from supervisor.runtime.store import read_state
from tests.harness import REPO, World, personas_toml, toml_value, world

FAKE_ACP = REPO / "tests" / "fakes" / "fake_acp_agent.py"


def add_acp_agent(w: World, name: str = "fake", settings: dict[str, object] | None = None, **env: str) -> None:
    """Append `[agents.NAME]` (the fake ACP agent) to the world's config file."""
    data = w.tmp / "acp-data"
    data.mkdir(exist_ok=True)
    values: dict[str, object] = {
        "protocol": "acp",
        "command": [sys.executable, str(FAKE_ACP), "acp"],
        "env": {"XDG_DATA_HOME": str(data), **env},
        **(settings or {}),
    }
    with w.config_path.open("a") as f:
        f.write(f"\n[agents.{name}]\n")
        for key, value in values.items():
            f.write(f"{key} = {toml_value(value)}\n")


async def new_acp_session(w: World, name: str, agent: str = "fake") -> str:
    directory = w.work / name
    directory.mkdir(parents=True, exist_ok=True)
    await w.say(f"!new {name} {directory} agent={agent}")
    root = await w.wait_for(lambda: w._root_of(name), 30)
    return str(root["id"])


def record_of(w: World, name: str) -> Any:
    state = read_state(w.tmp / "state").state
    return next(r for r in state.sessions.values() if r.name == name)


def refused(w: World, text: str) -> bool:
    return any(text in p["message"] for p in w.bot_posts())


def permission_post(w: World, root: str, nth: int = 0) -> dict[str, Any] | None:
    asks = [p for p in w.bot_posts(root) if "Permission needed" in p["message"]]
    return asks[nth] if len(asks) > nth else None


async def test_a_persona_that_names_an_agent_runs_its_sessions_on_that_agent(tmp_path: Path) -> None:
    """PRODUCT: personas may name `agent = "NAME"`; `!new ... persona=P` then runs on that
    agent, unless the command names another."""
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            personas_toml(w.config_path, {"acpish": {"agent": "fake"}})
            await w.start()
            for name in ("viap", "named"):
                (w.work / name).mkdir()
            await w.say(f"!new viap {w.work / 'viap'} persona=acpish")
            await w.say(f"!new named {w.work / 'named'} agent=claude persona=acpish")
            root = await w.wait_for(lambda: w._root_of("viap"), 30)
            assert "agent `fake`" in root["message"]
            await w.say("hello there", root_id=root["id"])
            await w.answered(root["id"], "Echo #1: hello there")  # the fake ACP agent's words
            await w.wait_for(lambda: w._root_of("named"), 30)
            assert (record_of(w, "viap").agent, record_of(w, "named").agent) == ("fake", "")


async def test_a_prompt_in_an_acp_thread_is_answered_and_the_agents_id_is_kept(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            await w.start()
            root = await new_acp_session(w, "acp1")
            assert "agent `fake`" in w.post(root)["message"]
            await w.say("hello there", root_id=root)
            await w.answered(root, "Echo #1: hello there")
            record = record_of(w, "acp1")
            assert record.agent == "fake"
            assert record.agent_session_id.startswith("ses_")  # the agent's choice, on disk
            await w.say("and again", root_id=root)
            text = await w.answered(root, "Echo #2: and again")
            assert "first prompt in this conversation: 'hello there'" in text
            await w.say("!status", root_id=root)
            await w.answered(root, f"agent session: `{record.agent_session_id}` · agent `fake`")


async def test_permission_allow_once_deny_and_allow_always(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            await w.start()
            root = await new_acp_session(w, "perm")
            await w.say("[tool echo made-1]", root_id=root)
            ask = await w.wait_for(lambda: permission_post(w, root, 0), 30)
            await w.react(ask["id"], "+1")
            await w.answered(root, "Result was: made-1")
            await w.settled(root)
            await trio.sleep(0.3)
            # The words before the request are one post, never repeated below the answer.
            assert [p["message"].startswith("I will run") for p in w.bot_posts(root)] == [True, False, False]

            await w.say("[tool echo made-2]", root_id=root)
            ask = await w.wait_for(lambda: permission_post(w, root, 1), 30)
            await w.react(ask["id"], "-1")
            await w.answered(root, "Denied")
            await w.settled(root)
            assert "Result was: made-2" not in w.thread_text(root)

            await w.say("[tool echo made-3]", root_id=root)
            ask = await w.wait_for(lambda: permission_post(w, root, 2), 30)
            await w.react(ask["id"], "repeat")
            await w.answered(root, "Result was: made-3")
            await w.settled(root)
            assert record_of(w, "perm").allowed_rules == ("command:echo made-3",)
            # Only that command: the agent was answered "once", so it did not learn its own
            # `echo *` rule, and another `echo` is asked.
            await w.say("[tool echo other]", root_id=root)
            ask = await w.wait_for(lambda: permission_post(w, root, 3), 30)
            await w.react(ask["id"], "-1")
            await w.wait_for(lambda: w.thread_text(root).count("Denied") == 2, 30)
            await w.settled(root)

            # The agent process is killed: a new one forgets the rule, the supervisor does not.
            pgid = record_of(w, "perm").pgid
            os.killpg(pgid, signal.SIGKILL)
            await w.answered(root, "exited unexpectedly")
            await w.say("[tool echo made-3] again", root_id=root)
            await w.wait_for(lambda: w.thread_text(root).count("Result was: made-3") == 2, 30)
            assert permission_post(w, root, 4) is None  # not asked again


async def test_stop_cancels_an_acp_turn_and_the_next_prompt_works(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            await w.start()
            root = await new_acp_session(w, "stop")
            await w.say("[slow 20] a long answer", root_id=root)
            await w.answered(root, "Echo #1")
            await w.say("!stop", root_id=root)
            await w.answered(root, "nterrupted")
            await w.settled(root)
            await w.say("after the stop", root_id=root)
            await w.answered(root, ": after the stop")


async def test_a_pending_request_is_cancelled_by_stop(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            await w.start()
            root = await new_acp_session(w, "stopask")
            await w.say("[tool echo never]", root_id=root)
            ask = await w.wait_for(lambda: permission_post(w, root, 0), 30)
            await w.react(ask["id"], "octagonal_sign")
            await w.settled(root)
            assert "Result was: never" not in w.thread_text(root)
            await w.say("next one", root_id=root)
            await w.answered(root, "next one")


async def test_a_request_the_agent_withdraws_shows_it_is_no_longer_asked(tmp_path: Path) -> None:
    """ACP's `$/cancel_request`: the agent withdraws its permission request (OpenCode does
    not, but the protocol lets any agent). The question in the thread says it needs no
    answer any more, the agent gets the answer the spec requires (`cancelled`), the tool
    does not run, and the turn goes on to its end without waiting for the person."""
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            await w.start()
            root = await new_acp_session(w, "withdrawn")
            await w.say("[tool echo never] [withdraw 0.5]", root_id=root)
            ask = await w.wait_for(lambda: permission_post(w, root, 0), 30)
            await w.wait_for(lambda: "no longer needs an answer" in w.post(ask["id"])["message"], 30)
            await w.settled(root)
            assert "Result was: never" not in w.thread_text(root)
            await w.say("next one", root_id=root)
            await w.answered(root, "next one")


async def _answered_then_its_agent_killed(w: World, name: str) -> tuple[str, SessionRecord]:
    """A new session that answered once, then its agent killed -9 (the thread says so):
    its root, and its record from before the kill."""
    root = await new_acp_session(w, name)
    await w.say("remember me", root_id=root)
    await w.answered(root, "Echo #1: remember me")
    await w.settled(root)
    first = record_of(w, name)
    os.killpg(first.pgid, signal.SIGKILL)
    await w.answered(root, "exited unexpectedly")
    return root, first


async def test_the_conversation_goes_on_after_kill_9_of_the_agent(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            await w.start()
            root, first = await _answered_then_its_agent_killed(w, "crash")
            await w.say("still there?", root_id=root)
            text = await w.answered(root, "Echo #2: still there?")
            assert "first prompt in this conversation: 'remember me'" in text
            assert record_of(w, "crash").agent_session_id == first.agent_session_id


async def test_kill_9_of_the_supervisor_resumes_each_acp_conversation_once(tmp_path: Path) -> None:
    with trio.fail_after(150):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            w.spawn()
            roots = [await new_acp_session(w, name) for name in ("one", "two")]
            for name, root in zip(("one", "two"), roots, strict=True):
                await w.say(f"first words of {name}", root_id=root)
                await w.answered(root, f"Echo #1: first words of {name}", timeout=40)
            ids = {name: record_of(w, name).agent_session_id for name in ("one", "two")}
            w.kill()
            for name, root in zip(("one", "two"), roots, strict=True):
                await w.say(f"while down {name}", root_id=root)
            w.spawn()
            for name, root in zip(("one", "two"), roots, strict=True):
                text = await w.answered(root, f"Echo #2: while down {name}", timeout=60)
                assert f"first prompt in this conversation: 'first words of {name}'" in text
                assert text.count(f"Echo #2: while down {name}") == 1
                assert text.count("Echo #3") == 0
                assert record_of(w, name).agent_session_id == ids[name]


async def test_an_agent_speaking_another_protocol_version_fails_its_session_plainly(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            add_acp_agent(w, "future", FAKE_ACP_FAULT="version=2")
            await w.start()
            bad = await new_acp_session(w, "bad", agent="future")
            good = await new_acp_session(w, "good")
            await w.say("hello", root_id=bad)
            await w.answered(bad, "cannot be used")
            assert "version 2" in w.thread_text(bad)
            await w.say("hello", root_id=good)
            await w.answered(good, "Echo #1: hello")


async def test_new_with_an_unknown_agent_is_a_friendly_error(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            await w.start()
            await w.say(f"!new x {w.work} agent=nope")
            await w.wait_for(lambda: any("no agent `nope`" in p["message"] for p in w.bot_posts()), 20)
            assert w._root_of("x") is None
            # The refusal is posted first, its handled mark written after: wait for the file.
            await w.wait_for(lambda: (w.tmp / "state" / "sessions.json").exists(), 20)
            assert not read_state(w.tmp / "state").state.sessions


async def test_a_crash_mid_turn_cuts_the_turn_and_the_agent_comes_back(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            await w.start()
            root = await new_acp_session(w, "crashy")
            other = await new_acp_session(w, "calm")
            await w.say("before", root_id=root)
            await w.answered(root, "Echo #1: before")
            await w.settled(root)
            await w.say("[crash] now", root_id=root)
            await w.answered(root, "was cut")
            await w.say("after", root_id=root)
            text = await w.answered(root, ": after (first prompt in this conversation: 'before')")
            assert "exited unexpectedly" in text
            await w.say("unbothered", root_id=other)
            await w.answered(other, "Echo #1: unbothered")
            assert "exited" not in w.thread_text(other)


async def test_the_watchdog_cancels_a_silent_turn_and_terminates_a_deaf_agent(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            add_acp_agent(w, settings={"stall_timeout_s": 2, "interrupt_grace_s": 1})
            await w.start()
            root = await new_acp_session(w, "quiet")
            await w.say("[hang] wait", root_id=root)
            await w.answered(root, "The watchdog interrupted the turn")  # session/cancel was heard
            await w.settled(root)
            await w.say("[hang-hard] wait more", root_id=root)
            await w.answered(root, "The agent was terminated")  # session/cancel was not
            await w.say("awake?", root_id=root)
            await w.answered(root, ": awake?")


async def test_an_agent_that_never_answers_initialize_fails_its_session_plainly(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            add_acp_agent(w, "mute", settings={"stall_timeout_s": 2}, FAKE_ACP_FAULT="no-initialize")
            await w.start()
            root = await new_acp_session(w, "mute", agent="mute")
            await w.say("anyone?", root_id=root)
            text = await w.answered(root, "cannot be used: it did not get ready within 2 s")
            assert "Not run" in await w.answered(root, "Not run")
            assert "failed" in text


async def test_an_agent_offering_only_load_continues_without_reposting_history(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            add_acp_agent(w, FAKE_ACP_FAULT="load-only")
            await w.start()
            root = await new_acp_session(w, "loader")
            await w.say("[garbage] one", root_id=root)  # a malformed line is survived
            await w.answered(root, "Echo #1: [garbage] one")
            await w.settled(root)
            os.killpg(record_of(w, "loader").pgid, signal.SIGKILL)
            await w.answered(root, "exited unexpectedly")
            await w.say("two", root_id=root)
            text = await w.answered(root, "Echo #2: two")
            await w.settled(root)
            assert text.count("Echo #1: [garbage] one") == 1  # the replayed history is not shown


async def test_claude_and_acp_sessions_side_by_side_never_cross(tmp_path: Path) -> None:
    """Eight threads, four on Claude Code and four on the ACP agent, prompts posted at
    once: each answer only in its own thread, each prompt reached one agent once."""
    with trio.fail_after(150):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            await w.start()
            roots: dict[str, str] = {}
            for i in range(4):
                roots[f"c{i}"] = await w.new_session(f"c{i}")
                roots[f"a{i}"] = await new_acp_session(w, f"a{i}")
            async with trio.open_nursery() as nursery:
                for name, root in roots.items():
                    nursery.start_soon(w.say, f"token-{name}", root)
            for name, root in roots.items():
                await w.answered(root, f"token-{name}", timeout=60)
            for root in roots.values():
                await w.settled(root)
            for name, root in roots.items():
                text = w.thread_text(root)
                others = [n for n in roots if n != name and f"token-{n}" in text]
                assert not others, (name, others)
                assert text.count(f": token-{name}") == 1, text  # answered once
            claude_prompts = [p for ps in w.prompts_by_process().values() for p in ps]
            assert sorted(claude_prompts) == sorted(f"token-c{i}" for i in range(4))


async def test_a_configured_session_runs_on_its_named_agent(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            (w.work / "home-lab").mkdir()
            w.configure(sessions=[{"name": "lab", "cwd": str(w.work / "home-lab"), "agent": "fake"}])
            add_acp_agent(w)
            await w.start()
            root = str((await w.wait_for(lambda: w._root_of("lab"), 30))["id"])
            assert "agent `fake`" in w.post(root)["message"]
            await w.say("configured", root_id=root)
            await w.answered(root, "Echo #1: configured")


async def test_new_with_resume_in_another_directory_is_refused_and_names_the_right_one(tmp_path: Path) -> None:
    """OpenCode continues a conversation from another directory but runs its tools in the
    old one, where its permission requests then wait for answers that never arrive (the
    turn hangs after 👍). The agent's `session/list` says where the conversation lives:
    `!new ... resume=ID` elsewhere is refused with that directory; there it works."""
    with trio.fail_after(120):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            await w.start()
            first = await new_acp_session(w, "first")
            await w.say("words", root_id=first)
            await w.answered(first, "Echo #1: words")
            acp_id = record_of(w, "first").agent_session_id
            await w.say("!end", root_id=first)
            await w.answered(first, "ended")
            elsewhere = w.work / "elsewhere"
            elsewhere.mkdir()
            await w.say(f"!new moved {elsewhere} agent=fake resume={acp_id}")
            await w.wait_for(functools.partial(refused, w, f"it belongs to `{w.work / 'first'}`"), 60)
            assert w._root_of("moved") is None
            await w.say(f"!new again {w.work / 'first'} agent=fake resume={acp_id}")
            again = str((await w.wait_for(lambda: w._root_of("again"), 60))["id"])
            await w.say("more", root_id=again)
            await w.answered(again, "Echo #2: more (first prompt in this conversation: 'words')")


async def test_new_with_resume_continues_a_conversation_of_either_agent(tmp_path: Path) -> None:
    """`!new NAME resume=ID` opens a thread on a conversation that exists already (here
    made by an earlier, ended session), for Claude Code and for an ACP agent; the thread
    root says how to go on in a terminal. A bad id is a friendly error; nothing is made."""
    with trio.fail_after(120):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            await w.start()
            claude_root = await w.new_session("c-first")
            await w.say("claude words", claude_root)
            await w.answered(claude_root, "echo #1: claude words")
            acp_root = await new_acp_session(w, "a-first")
            await w.say("acp words", root_id=acp_root)
            await w.answered(acp_root, "Echo #1: acp words")
            claude_id, acp_id = record_of(w, "c-first").id, record_of(w, "a-first").agent_session_id
            for root in (claude_root, acp_root):
                await w.say("!end", root_id=root)
                await w.answered(root, "ended")

            await w.say(f"!new c-again {w.work} resume={claude_id}")
            root = str((await w.wait_for(lambda: w._root_of("c-again"), 30))["id"])
            assert f"claude --resume {claude_id}" in w.post(root)["message"]
            await w.say("more", root)
            await w.answered(root, "echo #2: more (earlier: 'claude words')")

            await w.say(f"!new a-again {w.work / 'a-first'} agent=fake resume={acp_id}")
            root = str((await w.wait_for(lambda: w._root_of("a-again"), 30))["id"])
            assert f"`{acp_id}`, with the agent's own way" in w.post(root)["message"]  # the fake is no known program
            await w.say("more", root_id=root)
            await w.answered(root, "Echo #2: more (first prompt in this conversation: 'acp words')")

            bad_claude = "0b0e0c5e-0000-4000-8000-000000000000"
            await w.say(f"!new c-bad {w.work} resume={bad_claude}")
            await w.say(f"!new a-bad {w.work} agent=fake resume=ses_nope")
            for bad in (bad_claude, "ses_nope"):
                await w.wait_for(functools.partial(refused, w, f"Cannot continue `{bad}`"), 60)
            assert w._root_of("c-bad") is None and w._root_of("a-bad") is None
            names = {r.name for r in read_state(w.tmp / "state").state.sessions.values()}
            assert names == {"c-first", "a-first", "c-again", "a-again"}


async def test_thoughts_plans_and_stop_reasons_are_shown_plainly(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            await w.start()
            root = await new_acp_session(w, "words")
            await w.say("[think] [plan] ponder", root_id=root)
            text = await w.answered(root, "Echo #1")
            assert "Let me think about this briefly." in text
            assert "☑ Look around · ▸ Answer" in text
            assert text.count("Plan") == 1  # the second update replaced the first
            await w.settled(root)
            for reason, said in (
                ("max_tokens", "The answer reached the agent's token limit."),
                ("refusal", "The agent refused to go on."),
                ("max_turn_requests", "The turn reached the agent's request limit."),
            ):
                await w.say(f"[stop {reason}] go", root_id=root)
                await w.answered(root, f"⚠️ {said}")
                await w.settled(root)


async def test_an_idle_acp_agent_is_suspended_and_resumed_with_its_conversation(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            add_acp_agent(w, settings={"idle_suspend_s": 1})
            await w.start()
            root = await new_acp_session(w, "sleepy")
            await w.say("before the nap", root_id=root)
            await w.answered(root, "Echo #1: before the nap")
            await w.wait_for(lambda: record_of(w, "sleepy").status == "suspended", 30)
            await w.say("after the nap", root_id=root)
            await w.answered(root, "Echo #2: after the nap (first prompt in this conversation: 'before the nap')")


async def test_new_with_resume_of_a_conversation_a_live_session_holds_is_refused(tmp_path: Path) -> None:
    """Two live sessions on one conversation would have two agents append to one history
    (the reviewer's repro): `!new ... resume=ID` is refused while a live session holds
    ID, for an ACP agent's id and for Claude Code's; once that session ended it works."""
    with trio.fail_after(120):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            await w.start()
            a = await new_acp_session(w, "a")
            await w.say("first in a", root_id=a)
            await w.answered(a, "Echo #1: first in a")
            await w.new_session("c")
            acp_id, claude_id = record_of(w, "a").agent_session_id, record_of(w, "c").id

            await w.say(f"!new b {w.work / 'a'} agent=fake resume={acp_id}")
            await w.say(f"!new d {w.work} resume={claude_id}")
            for name, holder, conversation in (("b", "a", acp_id), ("d", "c", claude_id)):
                said = f"Session **{holder}** is still continuing conversation `{conversation}`"
                await w.wait_for(functools.partial(refused, w, said), 60)
                assert w._root_of(name) is None
            assert {r.name for r in read_state(w.tmp / "state").state.sessions.values()} == {"a", "c"}

            await w.say("!end", root_id=a)
            await w.answered(a, "ended")
            await w.say(f"!new b {w.work / 'a'} agent=fake resume={acp_id}")
            b = str((await w.wait_for(lambda: w._root_of("b"), 30))["id"])
            await w.say("more", root_id=b)
            await w.answered(b, "Echo #2: more (first prompt in this conversation: 'first in a')")


async def _asked_again_after_a_kill(w: World, fault: str, name: str) -> tuple[str, SessionRecord]:
    """With the fake's `fault`, a session that answered once and whose agent was then
    killed, asked again: its root, and its record from before the kill."""
    add_acp_agent(w, FAKE_ACP_FAULT=fault)
    await w.start()
    root, first = await _answered_then_its_agent_killed(w, name)
    await w.say("still there?", root_id=root)
    return root, first


async def test_a_conversation_that_exists_but_will_not_open_is_kept(tmp_path: Path) -> None:
    """The agent refuses to resume a conversation it still lists (OpenCode's -32603 says
    nothing more): it is started again under the restart policy, and once that gives up
    the session fails plainly and keeps the conversation's id, rather than dropping it
    for a new, empty conversation."""
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            root, first = await _asked_again_after_a_kill(w, "open-fails", "kept")
            refused = f"it has conversation `{first.agent_session_id}` but would not continue it"
            text = await w.answered(root, f"❌ The agent could not get ready: {refused}")
            assert "4 failed starts or exits recently" in text
            await w.answered(root, "⏭️ Not run, the session failed")  # the prompt waiting for it
            assert w.thread_text(root).count(f"⚠️ The agent could not get ready: {refused}") == 2
            assert record_of(w, "kept").agent_session_id == first.agent_session_id
            assert "a new one starts" not in w.thread_text(root)


async def test_a_conversation_refused_once_is_continued_by_the_next_start(tmp_path: Path) -> None:
    """OpenCode gives passing trouble the same -32603 as an unknown id: a conversation it
    lists but refused once is tried again by a new agent, which continues it."""
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            root, first = await _asked_again_after_a_kill(w, "open-fails-once", "again")
            await w.answered(root, "Echo #2: still there? (first prompt in this conversation: 'remember me')")
            assert f"⚠️ The agent could not get ready: it has conversation `{first.agent_session_id}`" in w.thread_text(root)
            assert record_of(w, "again").agent_session_id == first.agent_session_id
