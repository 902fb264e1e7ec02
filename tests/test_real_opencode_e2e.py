"""The real OpenCode behind a thread, end to end: the fake Mattermost, the supervisor, and
`opencode acp` (pinned 1.18.33) offline against the fake Anthropic API.

`!new x agent=opencode` opens a thread naming OpenCode; a prompt is answered there, a
second shows the conversation remembers the first; a tool call is asked in the thread and
runs once allowed with 👍. Skipped where OpenCode is not installed, except under CI=true.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from supervisor.agent.acp.backend import opencode_backend
from supervisor.agent.acp.driver import open_acp_session
from supervisor.runtime.store import read_state
from tests.harness import toml_value, world
from tests.test_real_opencode import (
    MISSING_REASON,
    fake_api,
    in_ci,
    opencode_binary,
    opencode_env,
    turn,
)

pytestmark = [
    pytest.mark.real_opencode,
    pytest.mark.skipif(opencode_binary() is None and not in_ci(), reason=MISSING_REASON),
]


async def test_one_thread_on_the_real_opencode(tmp_path: Path) -> None:
    binary = opencode_binary()
    if binary is None:
        pytest.fail(f"{MISSING_REASON}; CI=true, so the real-OpenCode tests must run", pytrace=False)
    with trio.fail_after(400):
        async with fake_api() as api, world(tmp_path) as w:
            env = opencode_env(tmp_path / "opencode-home", api.url)
            with w.config_path.open("a") as f:
                f.write("\n[agents.opencode]\n")
                f.write('protocol = "acp"\n')
                f.write(f"command = {toml_value([str(binary), 'acp'])}\n")
                f.write(f"env = {toml_value(env)}\n")
            await w.start()
            directory = w.work / "x"
            directory.mkdir()
            await w.say(f"!new x {directory} agent=opencode")
            root = str((await w.wait_for(lambda: w._root_of("x"), 60))["id"])
            assert "agent `opencode`" in w.post(root)["message"]

            await w.say("remember the word pineapple", root_id=root)
            await w.answered(root, "echo #1: remember the word pineapple", timeout=180)
            await w.settled(root, timeout=60)
            await w.say("what was the word?", root_id=root)
            text = await w.answered(root, "'remember the word pineapple'", timeout=120)
            assert "echo #2" in text
            await w.settled(root, timeout=60)

            await w.say("[tool touch ran-1]", root_id=root)

            def asks() -> list[dict[str, Any]]:
                return [p for p in w.bot_posts(root) if "Permission needed" in p["message"]]

            (ask,) = await w.wait_for(asks, 120)
            assert "touch ran-1" in ask["message"]
            await w.react(ask["id"], "+1")
            await w.wait_for(lambda: (directory / "ran-1").exists(), 120)
            await w.settled(root, timeout=120)

            await w.say("[tool touch ran-2]", root_id=root)
            ask = await w.wait_for(lambda: asks()[1:], 120)
            await w.react(ask[0]["id"], "-1")
            await w.answered(root, "Denied", timeout=60)
            await w.settled(root, timeout=120)
            assert not (directory / "ran-2").exists()

            await w.say("[tool echo a1]", root_id=root)
            ask = await w.wait_for(lambda: asks()[2:], 120)
            await w.react(ask[0]["id"], "repeat")
            await w.answered(root, "tool said: a1", timeout=120)
            await w.settled(root, timeout=120)
            # 🔁 covers `echo a1` exactly (OpenCode's own rule would be `echo *`): another
            # echo is asked, the same command again is not.
            await w.say("[tool echo a2]", root_id=root)
            ask = await w.wait_for(lambda: asks()[3:], 120)
            await w.react(ask[0]["id"], "+1")
            await w.answered(root, "tool said: a2", timeout=120)
            await w.settled(root, timeout=120)
            await w.say("[tool echo a1] again", root_id=root)
            await w.wait_for(lambda: w.thread_text(root).count("tool said: a1") == 2, 120)
            await w.settled(root, timeout=120)
            assert len(asks()) == 4

            await w.say("[slow 30] a long answer", root_id=root)
            await w.answered(root, ": [slow 30] a long", timeout=120)  # streaming now
            await w.say("!stop", root_id=root)
            await w.answered(root, "Interrupted", timeout=60)
            await w.settled(root, timeout=120)

            await w.say("[tool touch ran-3]", root_id=root)
            ask = await w.wait_for(lambda: asks()[4:], 120)
            await w.react(ask[0]["id"], "octagonal_sign")
            await w.settled(root, timeout=120)
            await w.say("still there?", root_id=root)
            await w.answered(root, ": still there?", timeout=120)
            await w.settled(root, timeout=120)
            assert not (directory / "ran-3").exists()
            print("thread:", w.thread_text(root), file=sys.stderr)


async def test_kill_9_of_the_supervisor_with_two_opencode_sessions(tmp_path: Path) -> None:
    """Two OpenCode threads; the supervisor is killed; a prompt is posted into each while
    it is down: each is answered once in its own thread, the conversation continued."""
    binary = opencode_binary()
    if binary is None:
        pytest.fail(f"{MISSING_REASON}; CI=true, so the real-OpenCode tests must run", pytrace=False)
    with trio.fail_after(600):
        async with fake_api() as api, world(tmp_path) as w:
            env = opencode_env(tmp_path / "opencode-home", api.url)
            with w.config_path.open("a") as f:
                f.write("\n[agents.opencode]\n")
                f.write('protocol = "acp"\n')
                f.write(f"command = {toml_value([str(binary), 'acp'])}\n")
                f.write(f"env = {toml_value(env)}\n")
            w.spawn()
            roots: dict[str, str] = {}
            for name in ("one", "two"):
                (w.work / name).mkdir()
                await w.say(f"!new {name} {w.work / name} agent=opencode")
                roots[name] = str((await w.wait_for(functools.partial(w._root_of, name), 60))["id"])
            for name, root in roots.items():
                await w.say(f"first words of {name}", root_id=root)
                await w.answered(root, f"echo #1: first words of {name}", timeout=180)
            w.kill()
            for name, root in roots.items():
                await w.say(f"while down {name}", root_id=root)
            w.spawn()
            for name, root in roots.items():
                text = await w.answered(root, f"while down {name} (earlier: 'first words of {name}')", timeout=240)
                assert text.count(f"while down {name}") == 1
            # No OpenCode process of the killed run is left: the new run reaped them.
            state = read_state(w.tmp / "state").state
            assert all(r.agent_session_id.startswith("ses_") for r in state.sessions.values())


async def test_resume_an_opencode_conversation_started_outside(tmp_path: Path) -> None:
    """`!new y agent=opencode resume=ses_…` continues a conversation made outside the
    supervisor (here by our ACP driver, as a terminal user's OpenCode would); a bad id is
    a friendly error and no session is made."""
    binary = opencode_binary()
    if binary is None:
        pytest.fail(f"{MISSING_REASON}; CI=true, so the real-OpenCode tests must run", pytrace=False)
    with trio.fail_after(400):
        async with fake_api() as api, world(tmp_path) as w:
            env = opencode_env(tmp_path / "opencode-home", api.url)
            outside = w.work / "outside"
            outside.mkdir()
            async with open_acp_session(opencode_backend((str(binary),)), str(outside), env) as (agent, events, opened):
                await turn(agent, events, "words from a terminal")
            with w.config_path.open("a") as f:
                f.write("\n[agents.opencode]\n")
                f.write('protocol = "acp"\n')
                f.write(f"command = {toml_value([str(binary), 'acp'])}\n")
                f.write(f"env = {toml_value(env)}\n")
            await w.start()
            await w.say(f"!new y {outside} agent=opencode resume={opened.session_id}")
            root = str((await w.wait_for(functools.partial(w._root_of, "y"), 120))["id"])
            assert f"opencode --session {opened.session_id}" in w.post(root)["message"]
            await w.say("and now?", root_id=root)
            await w.answered(root, "and now? (earlier: 'words from a terminal')", timeout=180)
            await w.say(f"!new z {outside} agent=opencode resume=ses_0000000000000000000000000b")
            await w.wait_for(lambda: any("Cannot continue" in p["message"] for p in w.bot_posts()), 120)
            assert w._root_of("z") is None
