"""Issue 3: agent crashes, server outages and dropped WebSockets lose and duplicate nothing."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import signal
from pathlib import Path

import pytest
import trio

from supervisor.agent import AgentLaunch
from supervisor.agent.claude.codec import ClaudeCodec
from supervisor.chat import token
from supervisor.runtime import session as session_module
from supervisor.runtime.session import _spawn_failure
from tests.harness import World, personas_toml, world


def _answers(w: World, root: str, prompt: str) -> list[str]:
    return [str(p["message"]) for p in w.bot_posts(root) if re.search(rf"echo #\d+: {re.escape(prompt)}\b", str(p["message"]))]


async def test_agent_crash_mid_turn_restarts_with_the_conversation(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("alpha")
        await w.say("first words", root)
        await w.answered(root, "first words (earlier: none)")
        await w.say("[crash-once] fall over", root)
        text = await w.answered(root, "exited unexpectedly", timeout=30)
        assert "restarting it with the conversation" in text
        await w.wait_for(lambda: len(w.agent_starts()) == 2, 20)
        restarted = w.agent_starts()[1]
        assert restarted["resumed"] and any(a.startswith("--resume=") for a in restarted["argv"])
        await w.say("still there?", root)
        text = await w.answered(root, "still there? (earlier: 'first words'", timeout=30)


async def test_an_agent_that_keeps_dying_fails_its_session_and_no_other(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.configure(agent={"restart_max": 2, "restart_window_s": 60})
        personas_toml(w.config_path, {"crashy": {"model": "crash-at-start"}})
        await w.start()
        steady = await w.new_session("steady")
        await w.say("!new crashy persona=crashy")
        crashy = await w.wait_for(lambda: next(
            (p["id"] for p in w.bot_posts() if not p["root_id"] and "Session `crashy`" in p["message"]), None))
        await w.say("are you fine?", steady)  # works while the other one crashes in a loop
        await w.answered(steady, "are you fine?")
        text = await w.answered(crashy, "marked failed", timeout=30)
        assert "keeps exiting" in text and "crashing at start" in text
        crashy_starts = [s for s in w.agent_starts() if s.get("model") == "crash-at-start"]
        assert len(crashy_starts) == 3  # the first start and two restarts
        await w.say("hello?", crashy)
        await w.answered(crashy, "This session has ended", timeout=10)
        await w.say("still fine?", steady)
        await w.answered(steady, "still fine?")
        assert "failed" in await _sessions_listing(w)


async def _sessions_listing(w: World) -> str:
    await w.say("!sessions")
    listing = await w.wait_for(lambda: next((p["message"] for p in reversed(w.bot_posts()) if "| session |" in p["message"]), None))
    return str(listing)


async def _drop_refuse_and_post(w: World, root: str, prompts: list[str], *, forget: bool) -> None:
    w.server.cut_off(forget=forget)
    for prompt in prompts:
        await w.say(prompt, root)
    await trio.sleep(5)
    w.server.refuse_websockets(False)


async def test_a_choice_made_while_the_websocket_was_away_is_caught_up(tmp_path: Path) -> None:
    """👍 on a waiting request while the socket is down and the server has forgotten our
    connection (no replay): after the new hello the choice is read back over REST and the
    tool runs, instead of the turn waiting for the approval timeout."""
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("alpha")
        await w.say("[tool touch away.txt] make it", root)
        asked = await w.wait_for(lambda: next(
            (p for p in w.bot_posts(root) if "touch away.txt" in p["message"] and "👍" in p["message"]), None))
        await w.wait_for(lambda: {r["emoji_name"] for r in w.server.reactions_on(asked["id"])} >= {"+1", "-1"})
        w.server.cut_off()
        await w.react(asked["id"], "+1")
        await trio.sleep(2)
        w.server.refuse_websockets(False)
        await w.answered(root, "tool ran: touch away.txt", timeout=30)
        await w.wait_for(lambda: "Allowed once" in w.post(asked["id"])["message"])
        assert [p for p in w.bot_posts(root) if "Permission needed" in p["message"]] == [w.post(asked["id"])]


@pytest.mark.parametrize("replayable", [True, False], ids=["server-replay", "rest-catch-up"])
async def test_websocket_gap_is_handled_exactly_once(tmp_path: Path, replayable: bool) -> None:
    """Dropped, refused for 5 s, posts made in the gap: the server replays them on the same
    connection id, or (its queue forgotten) a new hello makes us catch up over REST."""
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("alpha")
        route = ("GET", "/api/v4/channels/{channel_id}/posts")
        catch_ups = w.server.stats.count(*route)
        prompts = [f"gap prompt {n}" for n in range(3)]
        await _drop_refuse_and_post(w, root, prompts, forget=not replayable)
        for prompt in prompts:
            await w.answered(root, f"{prompt} (earlier", timeout=60)
        await w.settled(root)
        if replayable:
            assert w.server.stats.ws_resumed >= 1
            assert w.server.stats.count(*route) == catch_ups, "replayed, not fetched"
        else:
            assert w.server.stats.count(*route) > catch_ups
        for prompt in prompts:
            assert len(_answers(w, root, prompt)) == 1
        # in order: each answer knows the prompts before it
        assert "gap prompt 2 (earlier: 'gap prompt 0', 'gap prompt 1')" in w.thread_text(root)


async def test_a_prompt_written_during_a_long_outage_is_answered_within_seconds_of_the_return(
    tmp_path: Path,
) -> None:
    """Five tries of the WebSocket refused in a row, as while a Mattermost restarts: once it
    is back, the next try comes within seconds (it used to wait up to 33 s more), and its
    hello fetches the prompt written meanwhile."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            await w.start()
            root = await w.new_session("alpha")
            w.server.cut_off()
            await w.say("written during the outage", root)
            tries = w.server.stats.ws_upgrades
            await w.wait_for(lambda: w.server.stats.ws_upgrades >= tries + 5, timeout=40)
            w.server.refuse_websockets(False)
            await w.answered(root, "written during the outage (earlier: none)", timeout=10)
            assert len(_answers(w, root, "written during the outage")) == 1


async def test_rest_outage_of_30s_while_answers_stream(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.start()
        roots = [await w.new_session(f"s{n}") for n in range(3)]
        for n, root in enumerate(roots):
            await w.say(f"[slow 4] outage answer {n}", root)
        await trio.sleep(1)
        w.server.fail_requests("refuse")
        await trio.sleep(10)
        w.server.fail_requests(503)
        await trio.sleep(10)
        w.server.fail_requests("drop_response")
        await trio.sleep(10)
        w.server.fail_requests(None)
        for n, root in enumerate(roots):
            await w.answered(root, f"echo #1: outage answer {n} (earlier: none)", timeout=90)
            await w.settled(root, timeout=90)
        for n, root in enumerate(roots):
            posts = [str(p["message"]) for p in w.bot_posts(root)]
            assert len(_answers(w, root, f"outage answer {n}")) == 1, posts
            # The completion line is the answer's footer: one post holds both, once.
            done = [i for i, m in enumerate(posts) if "\n✅ Done" in m or m.startswith("✅ Done")]
            answer = [i for i, m in enumerate(posts) if f"outage answer {n}" in m]
            assert len(done) == 1 and answer[0] <= done[0], "complete, in order, no duplicates"
            assert len(posts) == len(set(p["id"] for p in w.bot_posts(root)))


async def test_a_session_whose_directory_is_gone_says_so_at_once_instead_of_restarting_in_a_loop(
    tmp_path: Path,
) -> None:
    """The directory was deleted (or moved) while its session slept: its agent cannot start
    there, and restarting it would fail the same way. Said once, plainly; no restarts."""
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("scratch")
        await w.say("hello", root)
        await w.answered(root, "echo #1: hello")
        await w.stop()
        shutil.rmtree(w.work / "scratch")
        await w.start()
        await w.say("are you there?", root)
        text = await w.answered(root, "The agent cannot be used", timeout=20)
        assert f"❌ The agent cannot be used: its directory `{w.work / 'scratch'}` is gone (moved or deleted?)." in text
        assert "exited unexpectedly" not in text and "keeps exiting" not in text
        await w.answered(root, "Not run, the session failed")  # the prompt is not silently dropped
        assert len(w.agent_starts()) == 1  # the first run's; none could start since
        # The way back, as the thread says it: the same conversation in a new session.
        carry_on = re.search(r"To carry on its conversation \(once the cause is mended\), write `([^`]+)` in", text)
        assert carry_on, text
        (w.work / "scratch").mkdir()
        await w.say(carry_on.group(1))
        again = (await w.wait_for(lambda: [p["id"] for p in w.bot_posts()
                                           if not p["root_id"] and "Session `scratch`" in p["message"] and p["id"] != root]))[0]
        await w.say("back again?", again)
        await w.answered(again, "back again? (earlier: 'hello')", timeout=20)


def test_why_an_agent_could_not_start_names_the_directory_only_when_it_is_gone() -> None:
    launch = AgentLaunch(session_id="s", cwd="projects/one", resume=False)
    gone = FileNotFoundError(errno.ENOENT, "No such file or directory", "projects/one")
    assert _spawn_failure(gone, launch) == "its directory `projects/one` is gone (moved or deleted?)"
    closed = PermissionError(errno.EACCES, "Permission denied", "projects/one")
    assert _spawn_failure(closed, launch) == "it could not be started (Permission denied: `projects/one`)"
    no_command = FileNotFoundError(errno.ENOENT, "No such file or directory", "claude")
    assert _spawn_failure(no_command, launch) == "it could not be started (No such file or directory: `claude`)"


@pytest.mark.parametrize("stall_timeout_s", [3, 0])
async def test_a_frozen_agent_that_takes_no_prompt_is_ended_after_the_stall_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stall_timeout_s: int
) -> None:
    """A prompt bigger than the pipe (an image) to an agent that reads nothing (here
    SIGSTOPped): the write cannot finish, and the session, waiting on it, could not tick
    its watchdog nor hear 🛑. After `stall_timeout_s` the agent is ended as a hung one (not
    counted as a crash): the turn is said cut, and the next prompt is answered by a fresh
    agent. With the stall timeout off (0), the same after `TAKES_INPUT_WITHIN_S` (here 2 s):
    the session once waited on that write for ever, deaf to 🛑 and `!end`. A stall timeout
    longer than that was cut to it (a slow first start of an ACP agent failed at 300 s)."""
    monkeypatch.setattr(session_module, "TAKES_INPUT_WITHIN_S", 2.0)
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            w.configure(agent={"stall_timeout_s": stall_timeout_s, "interrupt_grace_s": 1})
            await w.start()
            root = await w.new_session("frozen")
            await w.say("hello", root)
            await w.answered(root, "echo #1: hello")
            pgid = int(w.agent_starts()[-1]["pgid"])
            os.killpg(pgid, signal.SIGSTOP)
            image = w.server.upload_as("alice", "big.png", os.urandom(300_000))  # ~400 KB as base64
            await w.server.user_post("alice", "look at this", root_id=root, file_ids=[image])
            text = await w.answered(root, "was cut. React 🔁 here to run it again.", timeout=30)
            waited = stall_timeout_s or 2
            assert f"The agent was terminated: it took no input for {waited} s (frozen?)." in text
            assert "exited unexpectedly" not in text  # a hung agent, not a crash
            assert "look at this" not in str(w.prompts_by_process())  # it never got in whole
            await w.say("awake?", root)
            await w.answered(root, ": awake?", timeout=20)
            assert len(w.agent_starts()) == 2 and "failed" not in text


async def test_a_file_the_server_keeps_failing_to_give_holds_up_neither_the_answer_nor_a_stop(
    tmp_path: Path,
) -> None:
    """A prompt's attachments are saved in a task of their own: while the server's file
    store fails (the download is retried until it answers), the running turn still streams
    (its footer and `!status` counting the prompts that wait) and a stop is heard at once;
    the prompt, and the one written after it, run in order once the file comes."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            await w.start()
            root = await w.new_session("files")
            await w.say("[slow 30] a long turn", root)
            await w.wait_for(lambda: w.prompts_by_process(), timeout=20)
            w.server.fail_requests(503, method="GET", path_prefix="/api/v4/files/")
            notes = w.server.upload_as("alice", "notes.txt", b"hello notes")
            await w.server.user_post("alice", "read the notes", root_id=root, file_ids=[notes])
            await w.say("and then this", root)
            info = ("GET", "/api/v4/files/{file_id}/info")
            await w.wait_for(lambda: w.server.stats.count(*info) >= 2, timeout=10)  # failed, retried
            # Both wait (one for its file, one behind it): the answer and !status say so.
            await w.answered(root, "⏳ 2 more prompts queued", timeout=10)
            await w.say("!status", root)
            await w.answered(root, "- queued prompts: 2", timeout=10)
            streamed = len(w.thread_text(root))
            await w.wait_for(lambda: len(w.thread_text(root)) > streamed, timeout=10)  # still streaming
            await w.say("!stop", root)
            await w.answered(root, "Interrupted", timeout=5)  # before: not while the file failed
            assert "read the notes" not in str(w.prompts_by_process())
            w.server.fail_requests(None)
            await w.answered(root, ": and then this", timeout=30)
            prompts = [p for ps in w.prompts_by_process().values() for p in ps]
            notes_prompt = next(i for i, p in enumerate(prompts) if p.startswith("read the notes"))
            assert f"uploads/{notes}" not in prompts[notes_prompt]  # the folder is the post's
            assert ".supervisor/uploads/" in prompts[notes_prompt] and "notes.txt" in prompts[notes_prompt]
            assert notes_prompt < prompts.index("and then this")


async def _a_prompt_waiting_for_its_file(w: World, text: str) -> str:
    """A new session, and a prompt in it whose file the server keeps failing to give
    (retried): the thread root."""
    await w.start()
    root = await w.new_session("files")
    w.server.fail_requests(503, method="GET", path_prefix="/api/v4/files/")
    notes = w.server.upload_as("alice", "notes.txt", b"hello notes")
    await w.server.user_post("alice", text, root_id=root, file_ids=[notes])
    await w.wait_for(lambda: w.server.stats.count("GET", "/api/v4/files/{file_id}/info") >= 1, timeout=10)
    return root


async def test_a_stop_while_only_a_prompts_file_is_on_its_way_stops_that_prompts_turn(
    tmp_path: Path,
) -> None:
    """No turn runs yet, but a prompt waits for its file: a stop then is for that prompt's
    turn (as when the download held up the whole session), not "nothing to stop"."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            root = await _a_prompt_waiting_for_its_file(w, "[slow 30] read the notes")
            await w.say("!stop", root)
            await trio.sleep(1)
            assert "Nothing to stop" not in w.thread_text(root)
            w.server.fail_requests(None)
            text = await w.answered(root, "Interrupted", timeout=15)  # not after the 30 s turn
            assert "Nothing to stop" not in text
            prompts = [p for ps in w.prompts_by_process().values() for p in ps]
            assert len(prompts) == 1 and "notes.txt" in prompts[0]  # it ran, with its file


async def test_a_session_ended_while_a_prompts_file_is_on_its_way_says_so_to_that_prompt_once(
    tmp_path: Path,
) -> None:
    """The prompt is said not run, linked, like a queued one; a restart says it no more."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            root = await _a_prompt_waiting_for_its_file(w, "read the notes")
            await w.say("!end", root)
            # The ended note comes after the not-run one (maybe in a post of its own).
            text = await w.answered(root, "Session **files** ended", timeout=10)
            assert "Not run, the session ended" in text
            waiting = next(p for p in w.server.posts_in_channel(w.dm) if p["message"] == "read the notes")
            assert f"/pl/{waiting['id']})" in text.split("Not run, the session ended")[1]
            w.server.fail_requests(None)
            await w.stop()
            await w.start()
            await w.say("anyone?", root)  # answered after any catch-up of what was not handled
            await w.answered(root, "This session has ended", timeout=20)
            await trio.sleep(0.5)
            text = w.thread_text(root)
            assert text.count("Not run") == 1 and text.count("This session has ended") == 1, text
            assert not w.prompts_by_process()


async def test_a_new_hello_while_the_catch_up_still_fails_catches_up_once_more_in_order(
    tmp_path: Path,
) -> None:
    """The WebSocket drops again while the catch-up after its last hello is still being
    retried: the new hello waits behind that catch-up and makes one more round (a fetch
    that succeeds per hello), and the posts of both gaps are answered, once each and in
    the order written."""
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            await w.start()
            root = await w.new_session("alpha")
            catch_up = ("GET", "/api/v4/channels/{channel_id}/posts")
            w.server.fail_requests(503, method="GET", path_prefix=f"/api/v4/channels/{w.dm}/posts")
            for gap in range(2):
                w.server.cut_off()
                await w.say(f"gap prompt {gap}", root)
                connected = w.server.stats.ws_upgrades
                w.server.refuse_websockets(False)
                await w.wait_for(lambda: w.server.stats.ws_upgrades > connected, timeout=20)  # noqa: B023
                await w.wait_for(lambda: _failed_fetches(w) >= 2 * gap + 2, timeout=20)  # noqa: B023
            await w.say("live prompt", root)
            await trio.sleep(0.5)
            assert not w.prompts_by_process(), "all wait behind the catch-up"
            w.server.fail_requests(None)
            await w.answered(root, "live prompt (earlier: 'gap prompt 0', 'gap prompt 1')", timeout=30)
            for prompt in ("gap prompt 0", "gap prompt 1", "live prompt"):
                assert len(_answers(w, root, prompt)) == 1
            fetched = [r for r in w.server.stats.records(*catch_up) if r.status == 200]
            assert len(fetched) >= 3, "the start's catch-up, then one round per hello"


def _failed_fetches(w: World) -> int:
    return len([r for r in w.server.stats.records("GET", "/api/v4/channels/{channel_id}/posts") if r.status == 503])


async def test_a_catch_up_the_server_refuses_for_a_while_is_tried_again_and_the_gap_is_answered(
    tmp_path: Path,
) -> None:
    """A refusal is not an outage (the client waits those out): a 403 while the server
    restarts, a proxy's login page. The catch-up is tried again, so the prompt written
    while the WebSocket was away is answered, once."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            await w.start()
            root = await w.new_session("alpha")
            w.server.cut_off()
            await w.say("written while away", root)
            w.server.fail_requests(403, method="GET", path_prefix=f"/api/v4/channels/{w.dm}/posts", count=2)
            w.server.refuse_websockets(False)
            await w.answered(root, "written while away", timeout=30)
            refused = [r for r in w.server.stats.records("GET", "/api/v4/channels/{channel_id}/posts") if r.status == 403]
            assert len(refused) == 2
            assert len(_answers(w, root, "written while away")) == 1


async def _a_session_settled_in(w: World) -> str:
    """The supervisor started, and a session whose `!new` is answered: its thread root
    (what the tests after it make fail is then the answer's post, not the start's)."""
    await w.start()
    root = await w.new_session("alpha")
    await w.wait_for(lambda: any("Started session **alpha**" in p["message"] for p in w.bot_posts()))
    return root


async def test_a_post_answered_with_a_body_that_cannot_be_read_is_sent_again_not_dropped(tmp_path: Path) -> None:
    """A 200 whose body is not the post (a proxy's page, a body cut short) refuses
    nothing: the answer is sent again and shows, whole and once (it was given up, as if
    the server had refused it, and the thread never showed it)."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            root = await _a_session_settled_in(w)
            w.server.fail_requests(200, method="POST", path_prefix="/api/v4/posts", count=1)  # the answer's
            await w.say("answered through a flaky proxy", root)
            await w.answered(root, "echo #1: answered through a flaky proxy")
            await w.settled(root)
            assert 200 in [r.status for r in w.server.stats.records("POST", "/api/v4/posts")]  # the unread one
            answers = _answers(w, root, "answered through a flaky proxy")
            assert len(answers) == 1 and "✅ Done" in answers[0], w.thread_text(root)


async def test_a_post_made_whose_answer_cannot_be_read_is_found_not_made_twice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server made the post but a proxy answered with a page of its own: the post is
    found by its mark at once (not left to the server's 30 s memory of its pending id)
    and edited on, never sent a second time."""
    caplog.set_level(logging.INFO)
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            root = await _a_session_settled_in(w)
            posts_before = w.server.stats.count("POST", "/api/v4/posts")
            w.server.fail_requests("garble_response", method="POST", path_prefix="/api/v4/posts", count=1)
            await w.say("[slow 1] answered through a proxy that garbles", root)
            await w.answered(root, "echo #1: answered through a proxy that garbles")
            await w.settled(root)
            answers = _answers(w, root, "answered through a proxy that garbles")
            assert len(answers) == 1 and "✅ Done" in answers[0], w.thread_text(root)
            assert w.server.stats.count("POST", "/api/v4/posts") == posts_before + 1  # found, not sent again
            assert "made before its answer was lost; not sent again" in caplog.text


async def test_a_post_whose_answer_and_look_up_cannot_be_read_is_sent_again_not_lost(tmp_path: Path) -> None:
    """The proxy's page answers the create (which it never passed on) and the look-up for
    it too: the answer is not given up, it is sent again and shows once."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            root = await _a_session_settled_in(w)
            w.server.fail_requests(200, method="POST", path_prefix="/api/v4/posts", count=1)
            w.server.fail_requests("garble_response", method="GET", path_prefix=f"/api/v4/channels/{w.dm}/posts", count=1)
            await w.say("answered through a proxy that garbles twice", root)
            await w.answered(root, "echo #1: answered through a proxy that garbles twice")
            await w.settled(root)
            answers = _answers(w, root, "answered through a proxy that garbles twice")
            assert len(answers) == 1 and "✅ Done" in answers[0], w.thread_text(root)


async def test_a_post_the_server_refuses_is_given_up_said_and_the_thread_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A refusal for good (a 400: the text refused; a 404: the thread deleted) is not
    tried again: the log says it, and the thread's next answers are not held behind it."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            root = await _a_session_settled_in(w)
            w.server.fail_requests(400, method="POST", path_prefix="/api/v4/posts", count=1)  # the answer's
            await w.say("refused", root)
            await w.wait_for(lambda: "the server refused a post: 400" in caplog.text)
            await w.say("and then?", root)
            await w.answered(root, "echo #2: and then?")
            assert not _answers(w, root, "refused")
    assert caplog.text.count("the server refused a post") == 1


async def test_a_token_revoked_while_running_holds_the_answers_and_says_so_once_until_it_is_taken_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bot's token revoked mid-answer: one ERROR naming the cause, no stream of
    retries, the supervisor keeps running; once the token is given back, the answer that
    was streaming, a prompt written meanwhile and one written after are all answered."""
    monkeypatch.setattr(token, "CHECK_EVERY_S", 1.0)
    refused = "refuses the bot's token (401 on GET /users/me)"
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            await w.start()
            root = await w.new_session("alpha")
            await w.say("[slow 2] streaming as it is revoked", root)
            await w.wait_for(lambda: "streaming" in w.thread_text(root))
            w.server.revoke_token()
            await w.wait_for(lambda: refused in caplog.text, timeout=20)
            await w.say("written while it was refused", root)
            upgrades, checks = w.server.stats.ws_upgrades, w.server.stats.count_path("GET", "/api/v4/users/me")
            await trio.sleep(4)
            assert w.server.stats.ws_upgrades - upgrades <= 1
            assert w.server.stats.count_path("GET", "/api/v4/users/me") - checks <= 5
            w.server.accept_token()
            await w.answered(root, "streaming as it is revoked (earlier: none)")
            await w.answered(root, "written while it was refused", timeout=20)
            await w.say("written after", root)
            await w.answered(root, "written after", timeout=20)
    assert caplog.text.count(refused) == 1
    assert "takes the bot's token again" in caplog.text
    assert w.server.bot_token not in caplog.text


async def test_a_defect_met_on_one_agents_output_fails_that_session_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line of an agent that our reading of it fails on (an unhashable JSON-RPC id once
    did) ended the whole supervisor: every session's turn was cut at once. The defect is
    stood in for here by a codec that fails on one word; that session fails, said in its
    thread with how to carry it on, and a turn streaming in another thread goes on."""
    decode = ClaudeCodec.decode

    def fails_on_a_word(codec: ClaudeCodec, line: bytes) -> list[object]:
        if b"toxic-line" in line:
            raise TypeError("unhashable type: 'dict'")
        return decode(codec, line)  # type: ignore[return-value]

    monkeypatch.setattr(ClaudeCodec, "decode", fails_on_a_word)
    await _poisoned_beside_a_bystander(tmp_path)


async def test_a_defect_met_as_its_agent_is_being_stopped_still_fails_that_session_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same defect in the very round its agent's scope is cancelled (a stop, a suspend,
    a relaunch): caught around the nursery, it came out wrapped with a `Cancelled` and still
    ended the supervisor (found by review)."""
    decode = ClaudeCodec.decode
    stopping: list[trio.CancelScope] = []

    def fails_as_it_stops(codec: ClaudeCodec, line: bytes) -> list[object]:
        if b"toxic-line" in line:
            for scope in stopping:
                scope.cancel()
            raise TypeError("unhashable type: 'dict'")
        return decode(codec, line)  # type: ignore[return-value]

    monkeypatch.setattr(ClaudeCodec, "decode", fails_as_it_stops)
    await _poisoned_beside_a_bystander(tmp_path, stopping)


async def _poisoned_beside_a_bystander(tmp_path: Path, stopping: list[trio.CancelScope] | None = None) -> None:
    """A turn streams in one thread while another thread's agent prints "toxic-line"; the
    poisoned session's agent scope goes into `stopping` once it runs."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            supervisor = await w.start()
            bystander = await w.new_session("bystander")
            await w.say("[slow 3] a long answer", bystander)
            await w.answered(bystander, "echo #1")  # it streams
            root = await w.new_session("poisoned")
            await w.say("warm up", root)
            await w.answered(root, "echo #1: warm up")
            scope = supervisor.tasks[root]._agent_scope
            if stopping is not None and scope is not None:
                stopping.append(scope)
            await w.say("toxic-line", root)
            text = await w.answered(root, "The agent cannot be used")
            assert "TypeError: unhashable type: 'dict'" in text and "resume=" in text, text
            await w.answered(bystander, "✅ Done", timeout=30)
            assert bystander in supervisor.tasks and root not in supervisor.tasks
