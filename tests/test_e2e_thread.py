"""Issue 4 in the thread: permissions by reaction, interrupts, the watchdog, files, lifecycle."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from supervisor.chat.mattermost.link import MattermostLink
from supervisor.core.events import Choice, ChoiceMade
from supervisor.core.lifecycle import SessionState
from supervisor.core.router import route
from tests.harness import World, world

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


async def _permission_post(w: World, root: str, command: str) -> dict[str, Any]:
    return await w.wait_for(
        lambda: next((p for p in w.bot_posts(root) if command in p["message"] and "👍" in p["message"]), None)
    )


def _stdin_frames(w: World, kind: str) -> list[dict[str, Any]]:
    return [
        line["line"]
        for line in w.agent_lines()
        if line.get("event") == "stdin" and isinstance(line.get("line"), dict) and line["line"].get("type") == kind
    ]


async def test_permission_by_reaction_allow_then_deny_and_strangers_change_nothing(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.start()
        assert w.supervisor is not None
        root = await w.new_session("alpha")
        await w.say("[tool touch made.txt] make it", root)
        asked = await _permission_post(w, root, "touch made.txt")
        assert asked["root_id"] == root and "Bash" in asked["message"]
        await w.wait_for(lambda: {r["emoji_name"] for r in w.server.reactions_on(asked["id"])} >= {"+1", "-1", "repeat"})
        # a reaction from someone outside allowed_users (injected: they cannot reach this DM)
        stranger = Choice(w.server.user("mallory").id, asked["id"], "allow_once", w.dm)
        w.supervisor.router.apply(route(ChoiceMade(stranger), w.supervisor.router.view))
        await trio.sleep(0.5)
        assert not _stdin_frames(w, "control_response")
        assert "Allowed" not in w.post(asked["id"])["message"]
        await w.react(asked["id"], "+1")
        await w.answered(root, "tool ran: touch made.txt")
        await w.wait_for(lambda: "Allowed once" in w.post(asked["id"])["message"])
        allow = _stdin_frames(w, "control_response")[-1]["response"]["response"]
        assert allow["behavior"] == "allow" and allow["updatedInput"]["command"] == "touch made.txt"

        await w.say("[tool rm -rf build] clean up", root)
        asked = await _permission_post(w, root, "rm -rf build")
        await w.react(asked["id"], "-1")
        await w.answered(root, "tool denied: The user denied this tool call.")
        await w.wait_for(lambda: "Denied" in w.post(asked["id"])["message"])
        permission_posts = [p for p in w.bot_posts() if "Permission needed" in p["message"]]
        assert len(permission_posts) == 2 and all(p["root_id"] == root for p in permission_posts)


async def test_unanswered_request_is_reminded_once_then_denied_and_the_session_goes_on(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.configure(agent={"approval_timeout_s": 3})
        await w.start()
        root = await w.new_session("alpha")
        await w.say("[tool touch late.txt] please", root)
        asked = await _permission_post(w, root, "touch late.txt")
        reminder = await w.wait_for(lambda: next((p for p in w.bot_posts(root) if "is waiting for you" in p["message"]), None), 10)
        assert reminder["message"].startswith("@alice")
        await w.answered(root, "tool denied: No answer within 3s", timeout=10)
        await w.wait_for(lambda: "No answer in time" in w.post(asked["id"])["message"])
        assert len([p for p in w.bot_posts(root) if "is waiting for you" in p["message"]]) == 1
        await w.say("next one", root)
        await w.answered(root, "next one (earlier:")


async def test_interrupt_while_a_request_is_pending_cancels_it(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("alpha")
        await w.say("[tool touch never.txt] wait for me", root)
        asked = await _permission_post(w, root, "touch never.txt")
        await w.say("!stop", root)
        await w.answered(root, "Interrupted")
        await w.wait_for(lambda: "Cancelled" in w.post(asked["id"])["message"])
        await w.say("and now?", root)
        await w.answered(root, "and now? (earlier:")


async def test_allow_for_this_session_is_not_asked_again(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("alpha")
        await w.say("[tool touch one.txt] first", root)
        asked = await _permission_post(w, root, "touch one.txt")
        await w.react(asked["id"], "repeat")
        await w.answered(root, "tool ran: touch one.txt")
        await w.wait_for(lambda: "Allowed for this session" in w.post(asked["id"])["message"])
        sent = _stdin_frames(w, "control_response")[-1]["response"]["response"]
        assert sent["updatedPermissions"][0]["type"] == "addRules"
        assert sent["updatedPermissions"][0]["destination"] == "session"
        await w.say("[tool touch two.txt] second", root)
        await w.answered(root, "tool ran: touch two.txt")
        assert not [p for p in w.bot_posts(root) if "touch two.txt" in p["message"] and "👍" in p["message"]]


async def _interrupt_within_a_second(w: World, root: str, how: str) -> None:
    story = f"a long story told until a {how}"
    await w.say(f"[slow 20] {story}", root)
    await w.wait_for(lambda: any(story in p["message"] for p in w.bot_posts(root)), 15)
    interrupted = w.thread_text(root).count("Interrupted")
    before = len(_stdin_frames(w, "control_request"))
    acted_at = time.time()
    if how == "command":
        await w.say("!stop", root)
    else:
        answer = next(p for p in w.bot_posts(root) if story in p["message"])
        await w.react(answer["id"], "octagonal_sign")
    await w.wait_for(lambda: w.thread_text(root).count("Interrupted") > interrupted, 10)
    interrupts = [line for line in w.agent_lines() if line.get("event") == "stdin"
                  and line["line"].get("type") == "control_request"][before:]
    assert interrupts and interrupts[0]["line"]["request"]["subtype"] == "interrupt"
    # The interrupt reached the agent within a second of the person's action.
    assert interrupts[0]["t"] - acted_at < 1.0, interrupts[0]["t"] - acted_at


async def test_stop_command_and_stop_sign_interrupt_a_streaming_turn(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("alpha")
        await _interrupt_within_a_second(w, root, "command")
        await w.say("next", root)
        await w.answered(root, "next (earlier:")
        await _interrupt_within_a_second(w, root, "reaction")
        await w.say("after the sign", root)
        await w.answered(root, "after the sign (earlier:")


async def test_a_stop_that_reaches_the_agent_before_its_turn_began_is_sent_again_once_it_begins(
    tmp_path: Path,
) -> None:
    """Claude Code takes prompts at once, but a cold CLI reads them a few seconds later: a
    prompt and a stop written meanwhile reach it together, and an agent may take the
    interrupt before it has begun that turn, then run the turn whole. The turn's start
    (`system/init`) says so: the interrupt goes again and the turn stops."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            w.configure(agent={"env": {"HOME": str(w.home), "FAKE_AGENT_LOG": str(w.agent_log),
                                       "FAKE_AGENT_SLOW_START": "3"}})
            await w.start()
            root = await w.new_session("alpha")
            assert w.supervisor is not None
            core = w.supervisor.registry.tasks[root].core
            await w.wait_for(lambda: core.state is SessionState.IDLE, timeout=10)  # spawned, still asleep
            await w.say("[slow 20] not this one", root)
            await w.wait_for(lambda: core.turn is not None, timeout=5)
            await w.say("!stop", root)
            text = await w.answered(root, "Interrupted", timeout=15)  # not after the 20 s turn
            assert "did not stop when asked" not in text and "Done" not in text
            await w.say("this one", root)
            await w.answered(root, ": this one", timeout=20)


async def test_watchdog_terminates_a_deaf_agent(tmp_path: Path) -> None:
    """The one real-time watchdog case: timeout, interrupt, grace, kill, relaunch. The
    timing rules themselves (and an interrupt that is obeyed) are tested with an explicit
    clock in test_session_core.py and test_session_model.py."""
    async with world(tmp_path) as w:
        w.configure(agent={"turn_timeout_s": 2, "interrupt_grace_s": 2})
        await w.start()
        root = await w.new_session("alpha")
        await w.say("[hang-hard] deaf", root)
        await w.answered(root, "The agent was terminated", timeout=20)
        await w.answered(root, "was cut")  # the cut turn is named
        await w.say("and again?", root)
        await w.answered(root, "and again? (earlier:", timeout=20)
        assert len(w.agent_starts()) == 2 and w.agent_starts()[1]["resumed"]


async def test_attachments_land_under_safe_names_and_reach_the_agent(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("alpha")
        cwd = w.work / "alpha"
        files = [
            w.server.upload_as("alice", "notes.txt", b"hello notes"),
            w.server.upload_as("alice", "pixel.png", PNG),
            w.server.upload_as("alice", "../../etc/passwd", b"nope"),
            w.server.upload_as("alice", ".bashrc", b"alias x=y"),
        ]
        post = await w.server.user_post("alice", "look at these", root_id=root, file_ids=files)
        await w.answered(root, "look at these")
        folder = cwd / ".supervisor" / "uploads" / post["id"]
        assert sorted(p.name for p in folder.iterdir()) == ["bashrc", "notes.txt", "passwd", "pixel.png"]
        assert (folder / "notes.txt").read_bytes() == b"hello notes"
        assert not (tmp_path / "etc").exists()
        prompt = _stdin_frames(w, "user")[-1]["message"]["content"]
        text = prompt[0]["text"]
        assert f".supervisor/uploads/{post['id']}/notes.txt" in text
        images = [block for block in prompt if block.get("type") == "image"]
        assert len(images) == 1 and base64.b64decode(images[0]["source"]["data"]) == PNG


async def test_get_sends_a_file_from_the_session_directory_and_refuses_outside_it(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("alpha")
        (w.work / "alpha" / "result.txt").write_text("the result")
        (w.work / "secret.txt").write_text("not yours")
        await w.say("!get result.txt", root)
        sent = await w.wait_for(lambda: next((p for p in w.bot_posts(root) if p.get("file_ids")), None))
        assert "result.txt" in sent["message"]
        await w.say("!get ../secret.txt", root)
        await w.answered(root, "outside this session's directory")
        assert len([p for p in w.bot_posts(root) if p.get("file_ids")]) == 1


async def test_ended_session_answers_ended_and_status_and_sessions_tell_the_truth(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("alpha")
        other = await w.new_session("beta")
        await w.say("hi", root)
        await w.answered(root, "hi (earlier")
        await w.say("!status", root)
        status = await w.answered(root, "agent session")
        record = next(r for r in w.supervisor.store.state.sessions.values() if r.name == "alpha")  # type: ignore[union-attr]
        assert record.id in status and "idle" in status and "turns: 1" in status and "claude-opus" in status
        assert f"agent session: `{record.id}` · agent `claude`" in status  # the default agent is named too
        await w.say("!end", root)
        await w.answered(root, "Session **alpha** ended")
        await w.say("anyone?", root)
        await w.answered(root, "This session has ended")
        await w.say("!sessions")
        listing = await w.wait_for(lambda: next((p["message"] for p in reversed(w.bot_posts()) if "| session |" in p["message"]), None))
        assert re.search(r"\| alpha \| ended \|", listing) and re.search(r"\| beta \| (idle|starting) \|", listing)
        assert [p for ps in w.prompts_by_process().values() for p in ps] == ["hi"]
        assert other in w.supervisor.tasks  # type: ignore[union-attr]


async def test_idle_agent_is_suspended_and_resumed_with_its_conversation(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.configure(agent={"idle_suspend_s": 1})
        await w.start()
        root = await w.new_session("alpha")
        await w.say("before the nap", root)
        await w.answered(root, "before the nap (earlier")
        await w.wait_for(lambda: any(line.get("event") == "exit" for line in w.agent_lines()), 10)
        assert w.supervisor is not None
        await w.wait_for(lambda: w.supervisor.tasks[root].core.state.value == "suspended")  # type: ignore[union-attr]
        await w.say("after the nap", root)
        await w.answered(root, "after the nap (earlier: 'before the nap'")
        assert len(w.agent_starts()) == 2 and w.agent_starts()[1]["resumed"]


async def test_a_link_that_shows_session_states_is_told_each_change_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ShowsSessionState` (the web chat's sidebar): the runtime tells the link the record's
    status when the session starts, then each change: suspended while idle, live again,
    ended at the end."""
    shown: list[tuple[str, str]] = []

    async def show_session_state(_link: MattermostLink, root_id: str, status: str) -> None:
        shown.append((root_id, status))

    monkeypatch.setattr(MattermostLink, "show_session_state", show_session_state, raising=False)
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            w.configure(agent={"idle_suspend_s": 1})
            await w.start()
            root = await w.new_session("alpha")
            await w.say("before the nap", root)
            await w.answered(root, "before the nap")
            await w.wait_for(lambda: (root, "suspended") in shown, 10)
            await w.say("after the nap", root)
            await w.answered(root, "after the nap")
            await w.say("!end", root)
            await w.wait_for(lambda: (root, "ended") in shown, 10)
        # At its start (an earlier run's word may be stale), then each change.
        assert [status for _root, status in shown] == ["live", "suspended", "live", "ended"]


async def test_typing_during_a_turn_and_a_mention_after_a_long_one(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.configure(agent={"notify_after_s": 1})
        await w.start()
        root = await w.new_session("alpha")
        await w.say("[slow 5] take your time", root)
        await w.answered(root, "the turn finished after", timeout=20)
        bot_typing = [e for e in w.server.typing_events if e[0] == w.server.bot.id and e[2] == root]
        assert len(bot_typing) >= 2, "typing is shown while the turn runs"
        mention = next(p for p in w.bot_posts(root) if "the turn finished after" in p["message"])
        assert mention["message"].startswith("@alice")
