"""End to end with the real Claude Code CLI: fake Mattermost -> supervisor -> CLI -> fake API.

Nothing is faked between the supervisor and the agent here: every session runs the pinned
CLI (``scripts/install_claude.sh``), which talks to ``tests.fakes.fake_anthropic`` on
loopback. What a person does is done through Mattermost threads (posts and reactions on
the fake server), and what is checked is what the thread shows, what the CLI did (files it
made, the argv it was started with) and what it sent to the model API.

Without the CLI these tests are skipped; under ``CI=true`` they fail instead.
Timings are printed (``-s``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from supervisor.agent.claude.codec import ClaudeCodec
from supervisor.chat.mattermost.choices import PERMISSION_LEGEND as LEGEND
from supervisor.core.state import State
from supervisor.runtime.store import read_state
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.harness import World, world
from tests.realcli import claude_env, require_claude_binary, requires_real_cli

pytestmark = [pytest.mark.real_cli, requires_real_cli]

TEST_TIMEOUT = 60  # seconds per test, everything included
TURN_TIMEOUT = 30  # one answer, CLI start included, on a loaded machine

# The variables the CLI needs besides what the supervisor passes on from its own
# environment (PATH, the test-run marker, ...): a private HOME and the fake API.
AGENT_ENV_KEYS = (
    "HOME",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
    "DISABLE_TELEMETRY",
)
# The post that ends a turn: "✅ Done · 0.4s · $0.0012", "⏹️ Interrupted. · ...", "⚠️ ... · ...".
TURN_END = re.compile(r"^(✅ Done|⏹️ Interrupted\.|⚠️ .*) · \S.* · \$\d.*$", re.MULTILINE)


@attrs.define
class RealWorld:
    w: World
    api: FakeAnthropic
    binary: Path

    @property
    def state_file(self) -> Path:
        return self.w.tmp / "state" / "sessions.json"

    def _read_state(self) -> State | None:
        # Not there yet before the first start; the latest changes may be in the journal.
        on_disk = read_state(self.state_file.parent)
        return on_disk.state if on_disk.found else None

    async def session_ids(self) -> dict[str, str]:
        """Session name -> the agent session id, from the persisted state."""
        state = await self.w.wait_for(self._read_state, 5)
        return {r.name: r.id for r in state.sessions.values()}

    async def turn_end_on_disk(self, name: str) -> None:
        """Wait until the end of the last turn is persisted: its answer is marked as wholly
        on the server (nothing `unsettled`) and its cost is recorded.

        The settle is saved only after the completion post was made, so a kill -9 right
        after "Done" shows can still lose it: the next start then posts the answer again
        (said so), which this test is not about.
        """

        def settled() -> bool:
            state = self._read_state()
            record = (
                next((r for r in state.sessions.values() if r.name == name), None)
                if state
                else None
            )
            return record is not None and not record.unsettled and record.total_cost_usd > 0

        await self.w.wait_for(settled, 5)


@asynccontextmanager
async def real_world(tmp_path: Path, **agent: object) -> AsyncIterator[RealWorld]:
    binary = require_claude_binary()
    async with FakeAnthropic().running() as api, world(tmp_path) as w:
        env = claude_env(w.home, api.url)
        w.configure(
            agent_command=[str(binary)],
            agent={"env": {k: env[k] for k in AGENT_ENV_KEYS}, **agent},
        )
        yield RealWorld(w, api, binary)


# --------------------------------------------------------------------------- helpers


def turn_ends(w: World, root: str) -> list[str]:
    """The completion lines in the thread, oldest first: each is the footer of its turn's
    last post (or a post of its own when the turn showed no text)."""
    return [m.group(0) for p in w.bot_posts(root) for m in [TURN_END.search(p["message"])] if m]


async def turn_done(w: World, root: str, count: int, within: float = TURN_TIMEOUT) -> str:
    """Wait (up to `within` seconds) for the `count`-th end-of-turn post in the thread."""
    ends = await w.wait_for(lambda: (e := turn_ends(w, root)) and len(e) >= count and e, within)
    return str(ends[count - 1])


async def ask(w: World, root: str, prompt: str, expected: str, count: int) -> tuple[str, float]:
    """Post `prompt` in the thread; wait for `expected` and the turn's end. (thread, seconds)"""
    started = time.monotonic()
    await w.say(prompt, root)
    await w.answered(root, expected, timeout=TURN_TIMEOUT)
    await turn_done(w, root, count)
    return w.thread_text(root), time.monotonic() - started


def permission_posts(w: World, root: str) -> list[dict[str, Any]]:
    return [p for p in w.bot_posts(root) if "Permission needed" in p["message"]]


async def pending_permission(w: World, root: str, command: str) -> str:
    """The id of the pending permission post for `command`, once the bot has put its
    reactions on it: only then is the post surely known to the supervisor (a reaction that
    arrives before the REST answer creating the post is ignored as outside any thread)."""

    def probe() -> str | None:
        for post in permission_posts(w, root):
            if command in post["message"] and LEGEND in post["message"]:
                mine = {
                    r["emoji_name"]
                    for r in w.server.reactions_on(post["id"])
                    if r["user_id"] == w.server.bot.id
                }
                if {"+1", "repeat", "-1"} <= mine:
                    return str(post["id"])
        return None

    return str(await w.wait_for(probe, TURN_TIMEOUT))


def agent_argvs(state_dir: Path) -> list[list[str]]:
    """argv of every live agent started by a supervisor using `state_dir`."""
    marker = f"SUPERVISOR_STATE_DIR={state_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            argv = [a.decode() for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if "--output-format" in argv:
            found.append(argv)
    return found


def assert_per_turn_costs(ends: list[str]) -> None:
    """Each end-of-turn post shows that turn's own cost. The CLI's total_cost_usd keeps
    counting across --resume, so a resumed turn that showed the running total would cost
    about as much as all the turns before it together; similar turns cost about the same."""
    costs = [float(re.findall(r"\$(\d+\.\d+)", end)[-1]) for end in ends]
    assert all(c > 0 for c in costs), ends
    assert max(costs) < 1.5 * min(costs), ends


def record_agent_input(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every frame the (in-process) supervisor writes to an agent's stdin, decoded."""
    sent: list[dict[str, Any]] = []
    encode = ClaudeCodec.encode

    def recording(self: ClaudeCodec, command: Any) -> bytes:
        line = encode(self, command)
        sent.append(json.loads(line))
        return line

    monkeypatch.setattr(ClaudeCodec, "encode", recording)
    return sent


def _undestined(update: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in update.items() if k != "destination"}


def flag_value(argv: list[str], flag: str) -> str | None:
    """A flag's value, given as `--flag=VALUE` (how we pass ids) or as two words."""
    joined = next((a.split("=", 1)[1] for a in argv if a.startswith(flag + "=")), None)
    return joined if joined is not None else argv[argv.index(flag) + 1] if flag in argv else None


# --------------------------------------------------------------------------- conversation


async def test_two_turn_conversation_keeps_its_context(tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with real_world(tmp_path) as rw:
            w = rw.w
            await w.start()
            root = await w.new_session("alpha")
            _, t1 = await ask(w, root, "hello there", "echo #1: hello there (earlier: none)", 1)
            _, t2 = await ask(
                w, root, "do you remember?", "echo #2: do you remember? (earlier: 'hello there')", 2
            )
            print(f"\n[timing] turn 1 (CLI start included) {t1:.2f}s, turn 2 {t2:.2f}s")
            assert turn_ends(w, root)[-1].startswith("✅ Done")

            # One CLI process, started with the session's own id; both prompts went to it.
            session_id = (await rw.session_ids())["alpha"]
            (argv,) = agent_argvs(w.tmp / "state")
            assert flag_value(argv, "--session-id") == session_id
            assert flag_value(argv, "--permission-prompt-tool") == "stdio"
            req1, req2 = rw.api.message_requests
            assert req1.prompts == ["hello there"]
            assert req2.prompts == ["hello there", "do you remember?"]
            assert req2.headers["x-claude-code-session-id"] == session_id
            # Everything the bot said about it is in the thread (plus the !new answer in the DM).
            assert all(
                "hello there" not in p["message"] for p in w.bot_posts() if p["root_id"] != root
            )


# --------------------------------------------------------------------------- permissions


async def test_tool_call_allowed_by_thumbs_up_and_denied_by_thumbs_down(tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with real_world(tmp_path) as rw:
            w = rw.w
            await w.start()
            root = await w.new_session("alpha")
            cwd = w.work / "alpha"
            made, refused = cwd / "made.txt", cwd / "refused.txt"

            started = time.monotonic()
            await w.say(f"[tool touch {made}]", root)
            post_id = await pending_permission(w, root, f"touch {made}")
            t_asked = time.monotonic() - started
            assert "`Bash`" in w.post(post_id)["message"]
            assert not made.exists()
            await w.react(post_id, "+1")
            await turn_done(w, root, 1)
            assert made.exists()
            await w.wait_for(lambda: "Allowed once" in w.post(post_id)["message"], 5)
            await w.answered(root, "tool said: ", timeout=5)
            assert turn_ends(w, root)[0].startswith("✅ Done")

            await w.say(f"[tool touch {refused}]", root)
            post_id = await pending_permission(w, root, f"touch {refused}")
            await w.react(post_id, "-1")
            await turn_done(w, root, 2)
            assert not refused.exists()
            await w.wait_for(lambda: "Denied" in w.post(post_id)["message"], 5)
            await w.answered(root, "tool was denied: The user denied this tool call.", timeout=5)
            # The tool line of the refused call is marked as failed.
            pattern = re.compile(r"❌ `Bash` `touch \S*refused\.txt`")
            await w.wait_for(lambda: pattern.search(w.thread_text(root)), 5)
            print(f"\n[timing] prompt -> permission post {t_asked:.2f}s")

            # The model saw the denial as an error tool_result.
            assert rw.api.message_requests[-1].tool_results[-1]["is_error"] is True
            assert len(permission_posts(w, root)) == 2


async def test_allow_for_session_is_not_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = record_agent_input(monkeypatch)
    with trio.fail_after(TEST_TIMEOUT):
        async with real_world(tmp_path) as rw:
            w = rw.w
            await w.start()
            root = await w.new_session("alpha")
            target = w.work / "alpha" / "x.txt"

            await w.say(f"[tool touch {target}]", root)
            post_id = await pending_permission(w, root, f"touch {target}")
            asked = w.supervisor.tasks[root].core.pending  # type: ignore[union-attr]
            ((request_id, pending),) = asked.items()
            suggestions = pending.request.suggestions
            await w.react(post_id, "repeat")
            await turn_done(w, root, 1)
            assert target.exists()
            await w.wait_for(lambda: "Allowed for this session" in w.post(post_id)["message"], 5)

            # The CLI's own suggestion went back to it, scoped to this session.
            (answer,) = [
                f["response"]
                for f in sent
                if f.get("type") == "control_response" and f["response"]["request_id"] == request_id
            ]
            updates = answer["response"]["updatedPermissions"]
            assert answer["response"]["behavior"] == "allow"
            assert {
                "type": "addRules",
                "rules": [{"toolName": "Bash", "ruleContent": f"touch {target}"}],
                "behavior": "allow",
                "destination": "session",
            } in updates
            assert all(u["destination"] == "session" for u in updates)
            offered = [_undestined(s) for s in suggestions]
            assert all(_undestined(u) in offered for u in updates), "not the CLI's suggestion"

            target.unlink()
            await w.say(f"[tool touch {target}]", root)
            await turn_done(w, root, 2)
            assert target.exists(), "the same call did not run"
            assert len(permission_posts(w, root)) == 1, "the same call was asked about again"
            assert turn_ends(w, root)[1].startswith("✅ Done")

            # Another kind of call is still asked about.
            await w.say("[tool python3 -c pass]", root)
            other = await pending_permission(w, root, "python3 -c pass")
            await w.react(other, "-1")
            await turn_done(w, root, 3)
            assert len(permission_posts(w, root)) == 2

            # Nothing was written to disk: the rule lives in this session only.
            written = [
                *(w.work / "alpha").rglob("settings*.json"),
                *(w.home / ".claude").glob("settings*.json"),
            ]
            assert written == []

            # The supervisor restarts (so does the CLI, which forgets session rules): the
            # rule is handed to the new process (--allowedTools), and nobody is asked again.
            await w.stop()
            await w.start()
            target.unlink()
            await w.say(f"[tool touch {target}]", root)
            await turn_done(w, root, 4)
            assert target.exists(), "the allowed call did not run after the restart"
            assert len(permission_posts(w, root)) == 2, "asked again after the restart"


# --------------------------------------------------------------------------- interrupt


async def test_stop_sign_interrupts_the_turn_and_the_session_goes_on(tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with real_world(tmp_path) as rw:
            w = rw.w
            await w.start()
            root = await w.new_session("alpha")
            await w.say("[slow 20] take your time", root)
            await w.answered(root, "echo #1:", timeout=TURN_TIMEOUT)  # it is streaming

            stopped = time.monotonic()
            await w.react(root, "octagonal_sign")
            end = await turn_done(w, root, 1, within=10)
            t_stop = time.monotonic() - stopped
            print(f"\n[timing] 🛑 -> 'Interrupted' in the thread {t_stop:.2f}s")
            assert end.startswith("⏹️ Interrupted."), end
            assert t_stop < 5
            full = "echo #1: [slow 20] take your time (earlier: none)"
            assert full not in w.thread_text(root), "the answer was not cut"

            await ask(
                w,
                root,
                "still there?",
                "echo #2: still there? (earlier: '[slow 20] take your time')",
                2,
            )
            assert turn_ends(w, root)[1].startswith("✅ Done")
            assert len(agent_argvs(w.tmp / "state")) == 1, "the interrupt must not restart the CLI"


async def test_a_stop_written_while_the_cli_is_still_starting_interrupts_the_turn(tmp_path: Path) -> None:
    """The prompt and the 🛑 reach a cold CLI together, before it has begun the turn."""
    with trio.fail_after(TEST_TIMEOUT):
        async with real_world(tmp_path) as rw:
            w = rw.w
            await w.start()
            root = await w.new_session("alpha")
            await w.say("[slow 20] take your time", root)
            await w.react(root, "octagonal_sign")
            # Heard either way: the turn is interrupted, or (the CLI not spawned yet) the
            # prompt never reaches it. Never the whole 20 s turn, never the watchdog.
            not_run = "Not run, stopped before it started"
            await w.wait_for(lambda: turn_ends(w, root) or not_run in w.thread_text(root), 15)
            ends = turn_ends(w, root)
            assert not_run in w.thread_text(root) or ends[0].startswith("⏹️ Interrupted."), ends
            assert "did not stop when asked" not in w.thread_text(root)


async def test_stop_sign_on_a_pending_permission_ends_the_turn(tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with real_world(tmp_path) as rw:
            w = rw.w
            await w.start()
            root = await w.new_session("alpha")
            target = w.work / "alpha" / "never.txt"
            await w.say(f"[tool touch {target}]", root)
            post_id = await pending_permission(w, root, f"touch {target}")

            stopped = time.monotonic()
            await w.react(post_id, "octagonal_sign")
            end = await turn_done(w, root, 1, within=10)
            t_stop = time.monotonic() - stopped
            print(f"\n[timing] 🛑 on a permission request -> 'Interrupted' {t_stop:.2f}s")
            assert end.startswith("⏹️ Interrupted."), end
            assert t_stop < 5
            assert not target.exists()
            # The request is settled, no longer pending.
            await w.wait_for(lambda: LEGEND not in w.post(post_id)["message"], 5)

            await ask(w, root, "next", "echo #2: next (earlier: '[tool touch ", 2)
            assert len(agent_argvs(w.tmp / "state")) == 1


# --------------------------------------------------------------------------- restarts


async def test_graceful_restart_resumes_the_conversation(tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with real_world(tmp_path) as rw:
            w = rw.w
            await w.start()
            root = await w.new_session("alpha")
            await ask(w, root, "first", "echo #1: first (earlier: none)", 1)
            await ask(w, root, "second", "echo #2: second (earlier: 'first')", 2)
            session_id = (await rw.session_ids())["alpha"]

            t = time.monotonic()
            await w.stop()
            t_stop = time.monotonic() - t
            assert agent_argvs(w.tmp / "state") == [], "the agent outlived a graceful stop"
            t = time.monotonic()
            await w.start()
            t_start = time.monotonic() - t

            _, t_turn = await ask(
                w, root, "third", "echo #3: third (earlier: 'first', 'second')", 3
            )
            print(
                f"\n[timing] stop {t_stop:.2f}s, start {t_start:.2f}s, resumed turn {t_turn:.2f}s"
            )
            (argv,) = agent_argvs(w.tmp / "state")
            assert flag_value(argv, "--resume") == session_id
            assert flag_value(argv, "--session-id") is None
            last = rw.api.message_requests[-1]
            assert last.prompts == ["first", "second", "third"]
            assert last.headers["x-claude-code-session-id"] == session_id
            assert "that turn was cut" not in w.thread_text(root)
            assert_per_turn_costs(turn_ends(w, root))


async def test_kill_9_of_the_supervisor_process_then_resume(tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with real_world(tmp_path) as rw:
            w = rw.w
            w.spawn()
            await w.server.wait_for_websocket(count=1)
            root = await w.new_session("alpha")
            await ask(w, root, "first", "echo #1: first (earlier: none)", 1)
            await ask(w, root, "second", "echo #2: second (earlier: 'first')", 2)
            session_id = (await rw.session_ids())["alpha"]
            (before,) = agent_argvs(w.tmp / "state")
            assert flag_value(before, "--session-id") == session_id

            await rw.turn_end_on_disk("alpha")
            w.kill()
            await w.wait_for(lambda: w.server.websockets(w.server.bot.id) == 0, 10)
            await w.say("while it was down", root)  # handled by the next run
            t = time.monotonic()
            w.spawn()
            await w.answered(
                root,
                "echo #3: while it was down (earlier: 'first', 'second')",
                timeout=TURN_TIMEOUT,
            )
            t_answer = time.monotonic() - t
            await turn_done(w, root, 3)
            print(f"\n[timing] spawn after kill -9 -> resumed answer {t_answer:.2f}s")

            (argv,) = agent_argvs(w.tmp / "state")  # the old CLI is gone, one new one runs
            assert flag_value(argv, "--resume") == session_id
            assert rw.api.message_requests[-1].prompts == ["first", "second", "while it was down"]

            await ask(
                w,
                root,
                "fourth",
                "echo #4: fourth (earlier: 'first', 'second', 'while it was down')",
                4,
            )
            assert_per_turn_costs(turn_ends(w, root))
            answers = [p for p in w.bot_posts(root) if "echo #3: while it was down" in p["message"]]
            assert len(answers) == 1
            assert "that turn was cut" not in w.thread_text(root)


# --------------------------------------------------------------------------- parallel


async def test_two_sessions_in_parallel_answer_in_their_own_threads(tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with real_world(tmp_path) as rw:
            w = rw.w
            await w.start()
            roots = {name: await w.new_session(name) for name in ("left", "right")}
            started = time.monotonic()
            async with trio.open_nursery() as nursery:
                for name, root in roots.items():
                    nursery.start_soon(w.say, f"[slow 3] hello from {name}", root)
            for name, root in roots.items():
                await w.answered(
                    root, f"echo #1: [slow 3] hello from {name} (earlier: none)", TURN_TIMEOUT
                )
                await turn_done(w, root, 1)
            t_first = time.monotonic() - started
            async with trio.open_nursery() as nursery:
                for name, root in roots.items():
                    nursery.start_soon(w.say, f"again {name}", root)
            for name, root in roots.items():
                await w.answered(
                    root,
                    f"echo #2: again {name} (earlier: '[slow 3] hello from {name}')",
                    TURN_TIMEOUT,
                )
                await turn_done(w, root, 2)
            print(
                f"\n[timing] two sessions, first answers (2 CLI starts, 3 s streams) {t_first:.2f}s"
            )

            for name, root in roots.items():
                other = next(o for o in roots if o != name)
                text = w.thread_text(root)
                for leaked in (f"hello from {other}", f"again {other}"):
                    assert leaked not in text, f"{other}'s answer leaked into {name}'s thread"
            # Each CLI saw only its own conversation, and the two streams overlapped in time.
            ids = await rw.session_ids()
            by_session: dict[str, list[list[str]]] = {}
            for request in rw.api.message_requests:
                by_session.setdefault(request.headers["x-claude-code-session-id"], []).append(
                    request.prompts
                )
            assert by_session == {
                ids[name]: [
                    [f"[slow 3] hello from {name}"],
                    [f"[slow 3] hello from {name}", f"again {name}"],
                ]
                for name in roots
            }
            first_left, first_right = (
                next(
                    r
                    for r in rw.api.message_requests
                    if r.headers["x-claude-code-session-id"] == ids[name]
                )
                for name in roots
            )
            assert abs(first_left.t - first_right.t) < 3, "the sessions did not run in parallel"
            argvs = agent_argvs(w.tmp / "state")
            assert sorted(flag_value(a, "--session-id") or "" for a in argvs) == sorted(
                ids.values()
            )
            assert {p["root_id"] for p in w.bot_posts() if "hello from" in p["message"]} == set(
                roots.values()
            )
