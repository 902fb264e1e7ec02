"""The real OpenCode behind a thread, end to end: the fake Mattermost, the supervisor, and
`opencode acp` (pinned 1.18.33) offline against the fake Anthropic API.

`!new x agent=opencode` opens a thread naming OpenCode; a prompt is answered there, a
second shows the conversation remembers the first; a tool call is asked in the thread and
runs once allowed with 👍. Skipped where OpenCode is not installed, except under CI=true.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

from tests.harness import toml_value, world
from tests.test_real_opencode import MISSING_REASON, fake_api, in_ci, opencode_binary, opencode_env

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
            asks = lambda: [p for p in w.bot_posts(root) if "Permission needed" in p["message"]]  # noqa: E731
            (ask,) = await w.wait_for(asks, 120)
            assert "touch ran-1" in ask["message"]
            await w.react(ask["id"], "+1")
            await w.wait_for(lambda: (directory / "ran-1").exists(), 120)
            await w.settled(root, timeout=120)
            print("thread:", w.thread_text(root), file=sys.stderr)
