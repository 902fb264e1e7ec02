"""The real OpenCode (`opencode acp`, pinned 1.18.33) driven through our ACP driver,
offline against the fake Anthropic Messages API (tests/fakes/fake_anthropic.py).

Skipped where OpenCode is not installed (scripts/install_opencode.sh) -- except under
CI=true, where a missing OpenCode fails them. Each OpenCode process takes ~1.5 s to start
on a quiet machine (PROTOCOL.md §10) and much longer on a loaded one, so the scenarios
share processes where they can: one process carries the whole conversation test.
"""

from __future__ import annotations

import functools
import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from supervisor.agent.acp.backend import opencode_backend
from supervisor.agent.acp.client import AcpClient
from supervisor.agent.acp.driver import (
    AcpAgent,
    AcpStartError,
    AgentExited,
    DriverEvent,
    open_acp_agent,
    open_acp_session,
)
from supervisor.agent.acp.events import (
    AgentReady,
    OptionKind,
    SessionOpened,
    SessionOpenFailed,
)
from supervisor.core.agent_events import (
    PermissionAsked,
    PermissionCancelled,
    TextBlock,
    TextDelta,
    ToolOutcome,
    TurnEnded,
)
from tests.fakes.fake_anthropic import FakeAnthropic

REPO_ROOT = Path(__file__).resolve().parents[1]
PINNED_VERSION = "1.18.33"
CACHE_BINARY = REPO_ROOT / ".cache" / "opencode" / "node_modules" / ".bin" / "opencode"
MISSING_REASON = "OpenCode not installed (run scripts/install_opencode.sh)"
# Generous: a loaded 2-core machine has taken 30 s to start one OpenCode process.
STEP_TIMEOUT = 120


def opencode_binary() -> Path | None:
    override = os.environ.get("SUPERVISOR_TEST_OPENCODE", "").strip()
    for candidate in (CACHE_BINARY, Path(override) if override else None):
        if candidate is not None and candidate.exists() and os.access(candidate, os.X_OK):
            return candidate
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


pytestmark = [
    pytest.mark.real_opencode,
    pytest.mark.skipif(opencode_binary() is None and not in_ci(), reason=MISSING_REASON),
]


@pytest.fixture
def binary() -> Path:
    found = opencode_binary()
    if found is None:
        pytest.fail(
            f"{MISSING_REASON}; CI=true, so the real-OpenCode tests must run", pytrace=False
        )
    return found


def opencode_env(home: Path, api_url: str) -> dict[str, str]:
    """PROTOCOL.md §1: a private home and XDG tree, the fake API as the provider, no
    update checks, no models fetch, the plugin install pointed at the fake (404)."""
    env = {
        "PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
        "SHELL": "/bin/bash",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": str(home),
        "OPENCODE_CONFIG_CONTENT": json.dumps(
            {
                "provider": {
                    "anthropic": {"options": {"baseURL": f"{api_url}/v1", "apiKey": "test"}}
                },
                "model": "anthropic/claude-sonnet-4-5",
                "autoupdate": False,
                "share": "disabled",
            }
        ),
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
        "OPENCODE_DISABLE_CLAUDE_CODE": "1",
        "npm_config_registry": f"{api_url}/npm-registry/",
    }
    for kind in ("config", "data", "cache", "state"):
        env[f"XDG_{kind.upper()}_HOME"] = str(home / kind)
    if "SUPERVISOR_TEST_RUN" in os.environ:  # tests/conftest.py finds leftovers by it
        env["SUPERVISOR_TEST_RUN"] = os.environ["SUPERVISOR_TEST_RUN"]
    return env


@asynccontextmanager
async def fake_api() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic().running() as api:
        yield api


Answer = Callable[[PermissionAsked], OptionKind | None]


async def turn(
    agent: AcpAgent,
    events: trio.MemoryReceiveChannel[DriverEvent],
    prompt: str,
    answer: Answer = lambda ask: "allow_once",
    *,
    on_event: Callable[[DriverEvent], bool] = lambda e: False,
) -> list[DriverEvent]:
    """Send a prompt and collect its events up to TurnEnded. `answer` gives the option
    kind for each permission request (None: leave it pending); `on_event` returning True
    cancels the turn there."""
    seen: list[DriverEvent] = list(await agent.do(lambda c: c.prompt(prompt)))
    with trio.fail_after(STEP_TIMEOUT):
        async for event in events:
            seen.append(event)
            if isinstance(event, PermissionAsked):
                kind, rid = answer(event), event.request_id
                if kind is not None:
                    seen += await agent.do(functools.partial(AcpClient.answer_permission, request_id=rid, kind=kind))
            if on_event(event):
                seen += await agent.do(lambda c: c.cancel())
            if isinstance(event, TurnEnded | AgentExited):
                return seen
    raise AssertionError("the event stream ended")


def answer_text(events: list[DriverEvent]) -> str:
    return "\n".join(e.text for e in events if isinstance(e, TextBlock))


def ended(events: list[DriverEvent]) -> TurnEnded:
    last = events[-1]
    assert isinstance(last, TurnEnded), last
    return last


async def test_conversation_permissions_and_cancel(binary: Path, tmp_path: Path) -> None:
    """One OpenCode process: memory across prompts, a tool allowed (runs), one rejected
    (does not run), allow-always (the next matching call is not asked), cancel mid-answer
    and while a permission is pending, and the next prompt works after each."""
    work = tmp_path / "work"
    work.mkdir()
    async with fake_api() as api:
        env = opencode_env(tmp_path / "home", api.url)
        backend = opencode_backend((str(binary),))
        with trio.fail_after(STEP_TIMEOUT * 10):
            async with open_acp_session(backend, str(work), env) as (agent, events, opened):
                await _conversation(agent, events, opened, work)


async def _conversation(
    agent: AcpAgent,
    events: trio.MemoryReceiveChannel[DriverEvent],
    opened: SessionOpened,
    work: Path,
) -> None:
    assert opened.how == "new" and opened.session_id.startswith("ses_")
    assert agent.client.agent is not None
    assert agent.client.agent.version == PINNED_VERSION

    first = await turn(agent, events, "remember the word pineapple")
    assert ended(first).subtype == "success"
    second = await turn(agent, events, "what was the word?")
    assert "'remember the word pineapple'" in answer_text(second)

    allowed = await turn(agent, events, "[tool touch ran-1]")
    assert [e.description for e in allowed if isinstance(e, PermissionAsked)] == ["touch ran-1"]
    assert (work / "ran-1").exists()
    assert [o.is_error for o in allowed if isinstance(o, ToolOutcome)] == [False]

    rejected = await turn(agent, events, "[tool touch ran-2]", lambda a: "reject_once")
    assert [o.is_error for o in rejected if isinstance(o, ToolOutcome)] == [True]
    assert not (work / "ran-2").exists()

    always = await turn(agent, events, "[tool echo a1]", lambda a: "allow_always")
    assert sum(isinstance(e, PermissionAsked) for e in always) == 1
    unasked = await turn(agent, events, "[tool echo a2]", lambda a: "reject_once")
    assert not [e for e in unasked if isinstance(e, PermissionAsked)]
    assert [o.text for o in unasked if isinstance(o, ToolOutcome)] == ["a2\n"]

    mid = await turn(
        agent, events, "[slow 30] a long answer", on_event=lambda e: isinstance(e, TextDelta)
    )
    assert ended(mid).terminal_reason == "aborted_cancelled"
    pending = await turn(
        agent,
        events,
        "[tool touch ran-3]",
        lambda a: None,
        on_event=lambda e: isinstance(e, PermissionAsked),
    )
    assert [e.request_id for e in pending if isinstance(e, PermissionCancelled)]
    assert ended(pending).terminal_reason == "aborted_cancelled"
    assert not (work / "ran-3").exists()
    after = await turn(agent, events, "still there?")
    assert ended(after).subtype == "success"
    assert "still there?" in answer_text(after)


async def test_kill_then_resume_and_a_bad_id(binary: Path, tmp_path: Path) -> None:
    """kill -9 of the agent; a new process continues the conversation by session/resume.
    An unknown id is refused plainly and the same process can still open the right one."""
    work = tmp_path / "work"
    work.mkdir()
    async with fake_api() as api:
        env = opencode_env(tmp_path / "home", api.url)
        backend = opencode_backend((str(binary),))
        with trio.fail_after(STEP_TIMEOUT):
            async with open_acp_session(backend, str(work), env) as (agent, events, opened):
                await turn(agent, events, "remember the word pineapple")
                os.killpg(agent.pid, signal.SIGKILL)
                async for event in events:
                    if isinstance(event, AgentExited):
                        assert event.returncode == -signal.SIGKILL
                        break
        with trio.fail_after(STEP_TIMEOUT):
            async with open_acp_agent(backend, str(work), env) as (agent, events):
                assert isinstance(await events.receive(), AgentReady)
                await agent.do(
                    lambda c: c.open_session("ses_0000000000000000000000000a", str(work))
                )
                refused = await events.receive()
                assert isinstance(refused, SessionOpenFailed) and refused.how == "resume"
                await agent.do(lambda c: c.open_session(opened.session_id, str(work)))
                resumed = await events.receive()
                assert isinstance(resumed, SessionOpened) and resumed.how == "resume"
                again = await turn(agent, events, "what was the word?")
                assert "'remember the word pineapple'" in answer_text(again)

        with trio.fail_after(STEP_TIMEOUT), pytest.raises(AcpStartError, match="no conversation"):
            async with open_acp_session(
                backend, str(work), env, resume="ses_0000000000000000000000000b"
            ):
                pass


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_eight_sessions_start_at_once(binary: Path, tmp_path: Path) -> None:
    """Eight OpenCode processes on one fresh home, started together: all answer."""
    work = tmp_path / "work"
    work.mkdir()
    answers: dict[int, str] = {}
    async with fake_api() as api:
        env = opencode_env(tmp_path / "home", api.url)
        backend = opencode_backend((str(binary),))

        async def one(n: int) -> None:
            async with open_acp_session(backend, str(work), env) as (agent, events, _):
                answers[n] = answer_text(await turn(agent, events, f"hello from {n}"))

        with trio.fail_after(STEP_TIMEOUT * 7):
            async with trio.open_nursery() as nursery:
                for n in range(8):
                    nursery.start_soon(one, n)
    assert {n: f"hello from {n}" in text for n, text in answers.items()} == {
        n: True for n in range(8)
    }


async def test_a_rule_in_your_own_config_is_asked_anyway_unless_permission_mode_is_auto(
    binary: Path, tmp_path: Path
) -> None:
    """README, OpenCode specifics: OpenCode's last matching rule wins and the inline layer's
    keys come after your config file's, so under "default" the supervisor's `"*": "ask"`
    overrides a `"bash": "allow"` of your own: the command is asked. Under "auto" the
    supervisor adds no rule, and yours decide alone: it runs unasked."""
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    (home / "config" / "opencode").mkdir(parents=True)
    (home / "config" / "opencode" / "opencode.json").write_text(json.dumps({"permission": {"bash": "allow"}}))
    asked: dict[str, list[str]] = {}
    async with fake_api() as api:
        env = opencode_env(home, api.url)
        backend = opencode_backend((str(binary),))
        with trio.fail_after(STEP_TIMEOUT * 4):
            for mode in ("default", "auto"):
                async with open_acp_session(backend, str(work), env, permission_mode=mode) as (agent, events, _):
                    seen = await turn(agent, events, f"[tool touch ran-{mode}]")
                asked[mode] = [e.description for e in seen if isinstance(e, PermissionAsked)]
                assert (work / f"ran-{mode}").exists()
    assert asked == {"default": ["touch ran-default"], "auto": []}
