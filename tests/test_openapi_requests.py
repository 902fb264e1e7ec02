"""What the supervisor sends to Mattermost has the real API's shapes (checked against the
official OpenAPI spec), across a session's whole life: threads, streaming edits,
permission posts and reactions, files both ways, typing, catch-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.openapi_check import load_spec, require_spec, validate_record
from tests.harness import world


@pytest.fixture(scope="module", autouse=True)
def spec_loaded() -> None:
    require_spec()  # a missing spec skips, or fails under CI=true
    load_spec()  # seconds: once per module, outside any test's time budget


async def test_every_request_the_supervisor_sends_matches_the_spec(spec_loaded: None, tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("alpha")
        (w.work / "alpha" / "out.txt").write_text("for !get")
        await w.say("[slow 1] stream a little", root)
        await w.answered(root, "stream a little")
        await w.say("[tool touch x] ask", root)
        asked = await w.wait_for(lambda: next((p for p in w.bot_posts(root) if "👍" in p["message"]), None))
        await w.react(asked["id"], "+1")
        await w.answered(root, "tool ran")
        file_id = w.server.upload_as("alice", "in.txt", b"for the agent")
        await w.server.user_post("alice", "read it", root_id=root, file_ids=[file_id])
        await w.answered(root, "read it")
        await w.say("!get out.txt", root)
        await w.wait_for(lambda: any(p.get("file_ids") for p in w.bot_posts(root)))
        await w.say("!sessions")
        await w.wait_for(lambda: any("| session |" in p["message"] for p in w.bot_posts()))
        await w.settled(root)
    records = [r for r in w.server.stats.log if r.path.startswith("/api/v4/") and "websocket" not in r.path]
    routes = {(r.method, r.route) for r in records}
    for needed in [("POST", "/api/v4/posts"), ("PUT", "/api/v4/posts/{post_id}/patch"), ("POST", "/api/v4/reactions"),
                   ("GET", "/api/v4/files/{file_id}"), ("POST", "/api/v4/files")]:
        assert needed in routes, f"the scenario should exercise {needed}"
    problems = {f"{r.method} {r.path}": validate_record(r, w.server.url) for r in records}
    assert not {k: v for k, v in problems.items() if v}
