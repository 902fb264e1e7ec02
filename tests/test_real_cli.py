"""The real Claude Code CLI (2.1.330), driven directly over stream-json against the fake API.

No supervisor code here: these tests pin down the CLI behaviour the supervisor relies on
(context across turns, permission round-trips, "allow for this session", interrupt,
resume / session ids, cost accounting), with the exact flags the supervisor uses
(``tests.realcli.STREAM_JSON_FLAGS``). Run ``scripts/install_claude.sh`` first; without the
CLI they are skipped (under ``CI=true`` they fail instead). Timings are printed (``-s``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.fakes.fake_anthropic import FakeAnthropic
from tests.realcli import (
    STREAM_JSON_FLAGS,
    CliProcess,
    claude_env,
    open_cli,
    project_dir,
    require_claude_binary,
    requires_real_cli,
    user_message,
)

pytestmark = [pytest.mark.real_cli, requires_real_cli]

TEST_TIMEOUT = 60  # seconds per test, everything included


@dataclass
class Sandbox:
    binary: Path
    api: FakeAnthropic
    home: Path
    cwd: Path

    @property
    def env(self) -> dict[str, str]:
        return claude_env(self.home, self.api.url)

    def cli(self, *args: str) -> Any:
        return open_cli(self.binary, *args, cwd=self.cwd, env=self.env)


@pytest.fixture
def claude_bin() -> Path:
    return require_claude_binary()


@pytest.fixture
async def api() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic().running() as server:
        yield server


@pytest.fixture
def sandbox(claude_bin: Path, api: FakeAnthropic, tmp_path: Path) -> Sandbox:
    home, cwd = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    cwd.mkdir()
    return Sandbox(claude_bin, api, home, cwd)


def allow_as_is(frame: Mapping[str, Any]) -> dict[str, Any]:
    return {"behavior": "allow", "updatedInput": frame["request"]["input"]}


def of_type(
    frames: list[dict[str, Any]], type_: str, subtype: str | None = None
) -> list[dict[str, Any]]:
    return [
        f
        for f in frames
        if f.get("type") == type_ and (subtype is None or f.get("subtype") == subtype)
    ]


def permission_requests(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        f["request"]
        for f in of_type(frames, "control_request")
        if f["request"].get("subtype") == "can_use_tool"
    ]


def tool_results(frames: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(tool_result block, the user frame carrying it) for every tool result in ``frames``."""
    out = []
    for f in of_type(frames, "user"):
        content = f["message"].get("content")
        if isinstance(content, list):
            out += [(b, f) for b in content if b.get("type") == "tool_result"]
    return out


async def turn(
    cli: CliProcess, prompt: str, on_control: Any = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    await cli.say(prompt)
    return await cli.until_result(on_control)


# --------------------------------------------------------------------------- (a) + (f)


async def test_two_turns_keep_context_and_cost_is_cumulative(sandbox: Sandbox) -> None:
    session_id = str(uuid.uuid4())
    with trio.fail_after(TEST_TIMEOUT):
        async with sandbox.cli("--session-id", session_id) as cli:
            init_resp = await cli.control("initialize", hooks=None)
            t_initialize = time.monotonic() - cli.started
            assert init_resp["response"]["subtype"] == "success"

            t = time.monotonic()
            first, frames1 = await turn(cli, "hello there")
            t_turn1 = time.monotonic() - t
            t = time.monotonic()
            second, frames2 = await turn(cli, "do you remember the first?")
            t_turn2 = time.monotonic() - t

        assert cli.process.returncode == 0
        print(
            f"\n[timing] initialize {t_initialize:.3f}s, turn 1 {t_turn1:.3f}s, turn 2 {t_turn2:.3f}s"
        )

    # Every turn starts with system/init; the caller-chosen id is the session id.
    for frames, result in ((frames1, first), (frames2, second)):
        (init,) = of_type(frames, "system", "init")
        assert init["session_id"] == session_id
        assert result["session_id"] == session_id
        assert result["subtype"] == "success" and result["is_error"] is False
    assert first["result"] == "echo #1: hello there (earlier: none)"
    assert second["result"] == "echo #2: do you remember the first? (earlier: 'hello there')"

    # With --include-partial-messages the text arrives as stream_event deltas too.
    deltas = [
        f
        for f in frames2
        if f.get("type") == "stream_event" and f["event"]["type"] == "content_block_delta"
    ]
    assert "".join(d["event"]["delta"]["text"] for d in deltas) == second["result"]

    # The second API request carries the first exchange.
    req1, req2 = sandbox.api.message_requests
    assert req1.prompts == ["hello there"]
    assert req2.prompts == ["hello there", "do you remember the first?"]
    assert any(m["role"] == "assistant" for m in req2.messages)
    assert req2.headers["x-claude-code-session-id"] == session_id
    assert "x-api-key" not in req2.headers

    # (f) total_cost_usd is cumulative for the process: turn 2 = turn 1 + its own cost.
    cost1, cost2 = first["total_cost_usd"], second["total_cost_usd"]
    assert 0 < cost1 < cost2
    (usage2,) = second["modelUsage"].values()
    assert usage2["costUSD"] == pytest.approx(cost2)  # modelUsage is cumulative as well
    assert usage2["inputTokens"] == first["usage"]["input_tokens"] + second["usage"]["input_tokens"]
    # ... while model_usage_since_last_result is this turn's share, result_index counts results.
    (own2,) = second["model_usage_since_last_result"].values()
    assert own2["costUSD"] == pytest.approx(cost2 - cost1)
    assert (first["result_index"], second["result_index"]) == (0, 1)
    print(f"[cost] turn 1 {cost1:.6f} USD, after turn 2 {cost2:.6f} USD (cumulative)")

    # The transcript lands where PROTOCOL.md section 7 says.
    assert (project_dir(sandbox.home, sandbox.cwd) / f"{session_id}.jsonl").is_file()


# --------------------------------------------------------------------------- (b)


async def test_can_use_tool_allow_runs_the_command_and_deny_is_an_error_result(
    sandbox: Sandbox,
) -> None:
    made, refused = sandbox.cwd / "made.txt", sandbox.cwd / "refused.txt"
    with trio.fail_after(TEST_TIMEOUT):
        async with sandbox.cli() as cli:
            await cli.control("initialize", hooks=None)

            allowed, frames = await turn(cli, f"[tool touch {made}]", allow_as_is)
            (request,) = permission_requests(frames)
            assert request["tool_name"] == "Bash"
            assert request["input"]["command"] == f"touch {made}"
            assert request["tool_use_id"].startswith("toolu_fake_")
            assert request["permission_suggestions"], "the CLI offers 'always allow' suggestions"
            assert made.exists()
            ((block, _),) = tool_results(frames)
            assert block["is_error"] is False
            assert allowed["result"].startswith("tool said: ")
            assert allowed["permission_denials"] == []

            def deny(frame: Mapping[str, Any]) -> dict[str, Any]:
                return {"behavior": "deny", "message": "not in this test"}

            denied, frames = await turn(cli, f"[tool touch {refused}]", deny)
            (request,) = permission_requests(frames)
            assert not refused.exists()
            ((block, user_frame),) = tool_results(frames)
            assert block["is_error"] is True
            assert block["content"] == "not in this test"
            assert user_frame["tool_result_meta"][0]["permission_decision"]["decision"] == "reject"
            assert denied["result"] == "tool was denied: not in this test"
            assert denied["permission_denials"] == [
                {
                    "tool_name": "Bash",
                    "tool_use_id": request["tool_use_id"],
                    "tool_input": request["input"],
                }
            ]
            assert denied["subtype"] == "success" and denied["is_error"] is False

    # The fake saw the is_error tool_result the CLI sent back to the model.
    last = sandbox.api.message_requests[-1]
    assert last.tool_results[-1]["is_error"] is True


# --------------------------------------------------------------------------- (c)


def _rules_with_destination(destination: str | None) -> Any:
    """Build updatedPermissions from the request's own suggestions.

    ``None``: all suggestions verbatim (rules to localSettings + addDirectories + setMode
    acceptEdits); otherwise only the ``addRules`` ones, with ``destination`` replaced.
    """

    def build(suggestions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if destination is None:
            return suggestions
        return [{**s, "destination": destination} for s in suggestions if s["type"] == "addRules"]

    return build


@pytest.mark.parametrize(
    ("destination", "on_disk", "honoured", "survives_resume"),
    [
        pytest.param("session", None, True, False, id="addRules-session"),
        pytest.param(
            "localSettings",
            "work/.claude/settings.local.json",
            True,
            True,
            id="addRules-localSettings",
        ),
        pytest.param(
            "userSettings", "home/.claude/settings.json", True, True, id="addRules-userSettings"
        ),
        # Written to disk, yet ignored (in the session and after --resume): the CLI only reads
        # .claude/settings.json of a *trusted* workspace (hasTrustDialogAccepted in ~/.claude.json).
        pytest.param(
            "projectSettings",
            "work/.claude/settings.json",
            False,
            False,
            id="addRules-projectSettings",
        ),
        pytest.param(
            None, "work/.claude/settings.local.json", True, True, id="all-suggestions-verbatim"
        ),
    ],
)
async def test_allow_for_session_via_updated_permissions(
    sandbox: Sandbox,
    destination: str | None,
    on_disk: str | None,
    honoured: bool,
    survives_resume: bool,
) -> None:
    target, other = sandbox.cwd / "x", sandbox.cwd / "y"
    build = _rules_with_destination(destination)
    answered: list[dict[str, Any]] = []

    def allow_and_remember(frame: Mapping[str, Any]) -> dict[str, Any]:
        request = frame["request"]
        answered.append(request)
        return {
            **allow_as_is(frame),
            "updatedPermissions": build(request["permission_suggestions"]),
        }

    session_id = str(uuid.uuid4())
    with trio.fail_after(TEST_TIMEOUT):
        async with sandbox.cli("--session-id", session_id) as cli:
            await cli.control("initialize", hooks=None)
            _, frames = await turn(cli, f"[tool touch {target}]", allow_and_remember)
            assert len(permission_requests(frames)) == 1
            (suggestion,) = [
                s for s in answered[0]["permission_suggestions"] if s["type"] == "addRules"
            ]
            assert suggestion == {
                "type": "addRules",
                "rules": [{"toolName": "Bash", "ruleContent": f"touch {target}"}],
                "behavior": "allow",
                "destination": "localSettings",
            }

            # The same command again: not asked, it just runs.
            again, frames = await turn(cli, f"[tool touch {target}]", allow_and_remember)
            assert bool(permission_requests(frames)) is (not honoured)
            assert again["result"].startswith("tool said: ")
            ((_, user_frame),) = tool_results(frames)
            decision = user_frame["tool_result_meta"][0]["permission_decision"]
            (init,) = of_type(frames, "system", "init")

            # A different command of the same kind: rules are exact, so it is asked --
            # unless setMode acceptEdits was applied, which lets `touch` in the cwd through.
            _, frames = await turn(cli, f"[tool touch {other}]", allow_and_remember)
            asked_other = bool(permission_requests(frames))
        print(
            f"\n[allow-for-session {destination}] 2nd call decision={decision}, "
            f"mode={init['permissionMode']}, different command asked={asked_other}"
        )
        if destination is None:
            assert init["permissionMode"] == "acceptEdits"
            assert not asked_other
        else:
            assert init["permissionMode"] == "default"
            assert asked_other

        # What was written to disk.
        settings = sorted(
            str(p.relative_to(sandbox.home.parent))
            for p in [
                *sandbox.cwd.rglob("settings*.json"),
                *(sandbox.home / ".claude").glob("settings*.json"),
            ]
        )
        if on_disk is None:
            assert settings == []
        else:
            assert settings == [on_disk]
            allow = json.loads((sandbox.home.parent / on_disk).read_text())["permissions"]["allow"]
            assert f"Bash(touch {target})" in allow
            print(f"[allow-for-session {destination}] wrote {on_disk}: {allow}")

        # A new process on the same session: only persisted rules are remembered.
        async with sandbox.cli("--resume", session_id) as cli:
            _, frames = await turn(cli, f"[tool touch {target}]", allow_as_is)
            assert bool(permission_requests(frames)) is (not survives_resume)


# --------------------------------------------------------------------------- (d)


async def test_interrupt_stops_a_slow_turn_quickly_and_the_session_goes_on(
    sandbox: Sandbox,
) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with sandbox.cli() as cli:
            await cli.control("initialize", hooks=None)
            await cli.say("[slow 5] take your time")
            await cli.next_frame(
                lambda f: (
                    f.get("type") == "stream_event" and f["event"]["type"] == "content_block_delta"
                )
            )
            await trio.sleep(0.3)  # well inside the 5 s stream

            sent = time.monotonic()
            with trio.fail_after(10):  # the bound asserted below is 1 s
                response = await cli.control("interrupt")
                t_response = time.monotonic() - sent
                result, frames = await cli.until_result()
                t_result = time.monotonic() - sent
            print(
                f"\n[timing] interrupt: control_response {t_response:.3f}s, result {t_result:.3f}s"
            )

            assert t_result < 1.0, f"interrupted turn ended only after {t_result:.3f}s"
            assert response["response"]["subtype"] == "success"
            assert response["response"]["response"] == {"still_queued": []}
            assert result["subtype"] == "error_during_execution"
            assert result["is_error"] is True
            assert result["terminal_reason"] == "aborted_streaming"
            texts = [
                b["text"]
                for f in of_type(frames, "user")
                for b in f["message"]["content"]
                if b.get("type") == "text"
            ]
            assert "[Request interrupted by user]" in texts
            partial = of_type(frames, "assistant")[-1]["message"]["content"][0]["text"]
            assert len(partial) < len("echo #1: [slow 5] take your time (earlier: none)")

            after, _ = await turn(cli, "still there?")
            assert after["subtype"] == "success"
            assert after["result"] == "echo #2: still there? (earlier: '[slow 5] take your time')"
        # The last result was a success, so the exit status is 0 (it is 1 after an error result).
        assert cli.process.returncode == 0


# --------------------------------------------------------------------------- (e)


async def test_resume_continues_and_session_id_cannot_be_reused(sandbox: Sandbox) -> None:
    session_id = str(uuid.uuid4())
    with trio.fail_after(TEST_TIMEOUT):
        async with sandbox.cli("--session-id", session_id) as cli:
            first, _ = await turn(cli, "first prompt")
            second, _ = await turn(cli, "second prompt")

        async with sandbox.cli("--resume", session_id) as cli:
            await cli.control("initialize", hooks=None)
            resumed, frames = await turn(cli, "third, after resume")
        (init,) = of_type(frames, "system", "init")
        assert init["session_id"] == resumed["session_id"] == session_id
        assert (
            resumed["result"]
            == "echo #3: third, after resume (earlier: 'first prompt', 'second prompt')"
        )
        assert sandbox.api.message_requests[-1].prompts == [
            "first prompt",
            "second prompt",
            "third, after resume",
        ]
        # total_cost_usd does NOT restart with the process: --resume restores the session's
        # running total, and model_usage_since_last_result holds this turn's own share.
        (own,) = resumed["model_usage_since_last_result"].values()
        print(
            f"\n[cost] process 1: {first['total_cost_usd']:.6f} -> {second['total_cost_usd']:.6f}; "
            f"resumed process, first turn: {resumed['total_cost_usd']:.6f} (own share {own['costUSD']:.6f})"
        )
        assert resumed["result_index"] == 0
        assert resumed["total_cost_usd"] == pytest.approx(second["total_cost_usd"] + own["costUSD"])

        # --session-id with an id that already exists (in this cwd): refused at startup,
        # nothing on stdout, exit status 1.
        async with sandbox.cli("--session-id", session_id) as cli:
            with trio.fail_after(15):
                status = await cli.wait()
        assert status == 1
        assert cli.frames == []
        assert (
            bytes(cli.stderr).decode().strip()
            == f"Error: Session ID {session_id} is already in use."
        )

        # --resume with an unknown id: a result frame with the error, then exit status 1.
        unknown = str(uuid.uuid4())
        async with sandbox.cli("--resume", unknown) as cli:
            with trio.fail_after(15):
                status = await cli.wait()
        assert status == 1
        (result,) = of_type(cli.frames, "result")
        assert result["subtype"] == "error_during_execution"
        assert result["errors"] == [f"No conversation found with session ID: {unknown}"]

        # --session-id together with --resume needs --fork-session; then the fork gets the new id.
        fork_id = str(uuid.uuid4())
        async with sandbox.cli("--resume", session_id, "--session-id", fork_id) as cli:
            with trio.fail_after(15):
                status = await cli.wait()
        assert status == 1
        assert "--fork-session" in bytes(cli.stderr).decode()
        async with sandbox.cli(
            "--resume", session_id, "--fork-session", "--session-id", fork_id
        ) as cli:
            forked, _ = await turn(cli, "fork")
        assert forked["session_id"] == fork_id
        assert forked["result"].startswith(
            "echo #4: fork (earlier: 'first prompt', 'second prompt', 'third"
        )


async def test_session_id_is_only_unique_per_cwd(sandbox: Sandbox) -> None:
    """The "already in use" check only looks at this cwd's project folder."""
    session_id = str(uuid.uuid4())
    elsewhere = sandbox.cwd.parent / "elsewhere"
    elsewhere.mkdir()
    with trio.fail_after(TEST_TIMEOUT):
        async with sandbox.cli("--session-id", session_id) as cli:
            await turn(cli, "in work")
        async with open_cli(
            sandbox.binary, "--session-id", session_id, cwd=elsewhere, env=sandbox.env
        ) as cli:
            other, _ = await turn(cli, "in elsewhere")
    assert other["session_id"] == session_id
    assert other["result"] == "echo #1: in elsewhere (earlier: none)"
    for cwd in (sandbox.cwd, elsewhere):
        assert (project_dir(sandbox.home, cwd) / f"{session_id}.jsonl").is_file()


# --------------------------------------------------------------------------- API errors


async def test_api_error_turn_then_recovery(sandbox: Sandbox) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with sandbox.cli() as cli:
            failed, frames = await turn(cli, "[fail 500]")
            assert failed["is_error"] is True
            assert failed["subtype"] == "success"
            assert failed["api_error_status"] == 500
            assert failed["terminal_reason"] == "api_error"
            (assistant,) = of_type(frames, "assistant")
            assert assistant["message"]["model"] == "<synthetic>"
            assert len(sandbox.api.message_requests) == 1  # x-should-retry: false is honoured

            # The unanswered prompt and the next one travel in ONE user message, as two text
            # blocks (the first with a trailing newline); the fake reads the last one.
            ok, _ = await turn(cli, "and now a normal one")
            assert ok["is_error"] is False
            assert ok["result"] == "echo #2: and now a normal one (earlier: '[fail 500]')"
            last_user = [
                m for m in sandbox.api.message_requests[-1].messages if m["role"] == "user"
            ][-1]
            texts = [
                b["text"]
                for b in last_user["content"]
                if not b["text"].startswith("<system-reminder>")
            ]
            assert texts == ["[fail 500]\n", "and now a normal one"]

            # A transient failure ([fail N K]) is retried by the CLI itself, with api_retry frames.
            retried, frames = await turn(cli, "[fail 529 1]")
            assert retried["is_error"] is False
            (retry,) = of_type(frames, "system", "api_retry")
            assert retry["error_status"] == 529 and retry["attempt"] == 1


# --------------------------------------------------------------------------- timings


async def test_startup_and_turn_latency(sandbox: Sandbox) -> None:
    """Prompt written right at spawn: how long to the first system/init and result."""
    with trio.fail_after(TEST_TIMEOUT):
        async with sandbox.cli() as cli:
            await cli.send(user_message("quick"))
            await cli.next_of_type("system", "init")
            t_init = time.monotonic() - cli.started
            await cli.next_of_type("result")
            t_result = time.monotonic() - cli.started
            latencies = []
            for i in range(3):
                t = time.monotonic()
                await turn(cli, f"turn {i}")
                latencies.append(time.monotonic() - t)
            await cli.close_stdin()
            t = time.monotonic()
            await cli.wait()
            t_exit = time.monotonic() - t
    print(
        f"\n[timing] spawn->first init {t_init:.3f}s, spawn->first result {t_result:.3f}s, "
        f"later turns {', '.join(f'{x:.3f}' for x in latencies)}s, stdin EOF->exit {t_exit:.3f}s"
    )
    assert t_init < 15 and max(latencies) < 15 and t_exit < 10


def test_flags_are_the_supervisors_and_need_verbose() -> None:
    # The supervisor's flags, as the CLI demands: stream-json output requires --verbose.
    assert "--verbose" in STREAM_JSON_FLAGS and "--permission-prompt-tool" in STREAM_JSON_FLAGS
