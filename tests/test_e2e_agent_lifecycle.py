"""An agent's life as a process, end to end: what it leaves behind, how its death is seen,
and what counts as output for the stall watchdog. Real supervisor, fake Mattermost, fake
agents (the ACP one runs its tools in a real shell)."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.harness import World, world
from tests.test_e2e_acp import add_acp_agent, new_acp_session, permission_post


def _running(tag: str) -> list[int]:
    """The live processes whose command line holds `tag` (zombies are dead already)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            alive = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            if alive and tag.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


async def _run_tool(w: World, root: str, command: str, nth: int = 0) -> None:
    """The fake ACP agent runs `command` in a shell, once allowed."""
    await w.say(f"[tool {command}]", root_id=root)
    ask = await w.wait_for(lambda: permission_post(w, root, nth), 30)
    await w.react(ask["id"], "+1")
    await w.answered(root, "Result was")
    await w.settled(root)


async def test_end_also_ends_what_the_agent_started_outside_its_process_group(tmp_path: Path) -> None:
    """A `setsid` child has left the agent's process group (so would a detached Node
    child or a daemon): killing the group misses it; its marker, inherited from the
    agent, finds it."""
    tag = "4242.25"
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            await w.start()
            root = await new_acp_session(w, "bg")
            await _run_tool(w, root, f"setsid sleep {tag} >/dev/null 2>&1 </dev/null &")
            assert _running(tag), "the background sleeper should be running"
            await w.say("!end", root_id=root)
            await w.answered(root, "ended")
            await w.wait_for(lambda: not _running(tag), 10)
