"""Issue 2 end to end: the fake Mattermost, the real supervisor, real fake-agent processes."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

import trio

from tests.harness import world

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


async def test_new_session_thread_root_and_a_prompt_answered_in_it(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.start()
        root_id = await w.new_session("alpha")
        root = w.post(root_id)
        assert "alpha" in root["message"] and str(w.work / "alpha") in root["message"]
        assert ISO_UTC.search(root["message"])
        record = next(r for r in w.supervisor.store.state.sessions.values() if r.name == "alpha")  # type: ignore[union-attr]
        assert record.short_id in root["message"]
        assert "agent `claude`" in root["message"]  # the default agent is named too
        # the command is answered with a link to the thread
        await w.wait_for(lambda: any(root_id in p["message"] for p in w.bot_posts() if "Started session" in p["message"]))
        await w.say("hello there", root_id)
        text = await w.answered(root_id, "hello there")
        assert "echo" in text
        # every bot post about the prompt lives in the thread
        answers = [p for p in w.bot_posts() if "hello there" in p["message"]]
        assert answers and all(p["root_id"] == root_id for p in answers)
        starts = w.agent_starts()
        assert len(starts) == 1
        argv = starts[0]["argv"]
        for flag in ("--output-format", "--input-format", "--verbose", "--permission-prompt-tool"):
            assert flag in argv
        assert f"--session-id={record.id}" in argv  # one word: an id is never read as a flag
        assert starts[0]["cwd"] == str(w.work / "alpha")


async def test_ten_sessions_five_prompts_each_reach_the_right_agent_once(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.start()
        roots = {}
        for n in range(10):
            roots[f"s{n}"] = await w.new_session(f"s{n}")
        await w.wait_for(lambda: len(w.agent_starts()) == 10)
        async with trio.open_nursery() as nursery:
            for name, root in roots.items():
                for k in range(5):
                    nursery.start_soon(w.say, f"prompt {name}-{k}", root)
        for name, root in roots.items():
            for k in range(5):
                await w.answered(root, f"prompt {name}-{k}", timeout=60)
        # each prompt reached exactly one process, the one of its own session, once
        by_process = w.prompts_by_process()
        seen: dict[str, str] = {}
        for process, prompts in by_process.items():
            names = {p.split("-")[0].removeprefix("prompt ") for p in prompts}
            assert len(names) == 1, f"process {process} got prompts of {names}"
            for prompt in prompts:
                assert prompt not in seen, f"{prompt} reached two processes"
                seen[prompt] = process
        assert len(seen) == 50
        # and each answer landed only in its own thread
        for name, root in roots.items():
            text = w.thread_text(root)
            others = [o for o in roots if o != name]
            assert not any(f"prompt {o}-" in text for o in others)


async def test_main_dm_text_strangers_and_bot_reach_no_agent(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("alpha")
        await w.say("please fix the build")  # a root post that is no command
        await w.wait_for(lambda: any("Prompts go into a session thread" in p["message"] for p in w.bot_posts()))
        # mallory is no allowed user: her own DM with the bot reaches nothing
        evil = await w.say("!new evil", user="mallory")
        await w.say("do evil", evil["id"], user="mallory")
        await w.server.user_react("mallory", evil["id"], "octagonal_sign")
        await w.say("!bogus")
        await w.wait_for(lambda: any("unknown command" in p["message"] for p in w.bot_posts()))
        await w.say("real prompt", root)
        await w.answered(root, "real prompt")
        prompts = [p for ps in w.prompts_by_process().values() for p in ps]
        assert prompts == ["real prompt"]
        assert "do evil" not in w.thread_text(root)
        assert not [p for p in w.server.posts_in_channel(w.server.dm_with_bot("mallory")["id"])
                    if p["user_id"] == w.server.bot.id]
        assert [r.name for r in w.supervisor.store.state.sessions.values()] == ["alpha"]  # type: ignore[union-attr]


async def test_long_answer_with_a_fence_across_the_split(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("alpha")
        await w.say("[fence 40000] big one", root)
        await w.answered(root, "✅ Done", 60)
        await w.settled(root)
        posts = [p["message"] for p in w.bot_posts(root)]
        answer_posts = [m for m in posts if len(m) > 1000]
        assert len(answer_posts) >= 3
        # complete and in order: every row of the agent's code block, once, in sequence
        rows = re.findall(r"row (\d{5})", "\n".join(answer_posts))
        assert rows == [f"{n:05d}" for n in range(1, len(rows) + 1)] and len(rows) > 800
        for message in posts:
            assert len(message) <= 16383
            fences = [line for line in message.splitlines() if line.lstrip().startswith("```")]
            assert len(fences) % 2 == 0, "a post with an unbalanced code fence"


async def test_streaming_edits_are_coalesced_and_never_provoke_429(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.configure(render={"edit_interval_ms": 300}, mattermost={"requests_per_second": 10})
        w.server.rate_limit(per_second=10, burst=10)
        await w.start()
        root = await w.new_session("alpha")
        started = time.monotonic()
        await w.say("[slow 3] stream me", root)
        await w.answered(root, "stream me", timeout=30)
        await w.settled(root)
        elapsed = time.monotonic() - started
        edits: dict[str, list[float]] = {}
        for post_id, at in w.server.edits:
            edits.setdefault(post_id, []).append(at)
        assert edits, "the answer was never edited while it streamed"
        for times in edits.values():
            # Intermediate edits are spaced; the last one (the final text with its footer)
            # goes at once, whatever the interval.
            gaps = [b - a for a, b in itertools.pairwise(times)][:-1]
            assert all(gap >= 0.3 - 0.02 for gap in gaps), gaps
            assert len(times) <= elapsed / 0.3 + 2
        assert w.server.stats.rate_limited == 0


async def test_fewer_requests_per_answer_and_a_queued_prompt_said_in_the_running_answer(tmp_path: Path) -> None:
    """Issue 13: the completion line is the answer's footer (no post of its own), a
    queued prompt is said in the running answer's footer (no "Queued" post, no mark to
    take off later: at most one request), and a short answer costs at most two requests."""
    async with world(tmp_path) as w:
        # An interval far longer than the slow turn, so that a loaded machine cannot make
        # an intermediate edit due before the turn ends: only the final text is edited in.
        w.configure(render={"edit_interval_ms": 5000})
        await w.start()
        root = await w.new_session("alpha")
        await w.say("warm up", root)
        await w.answered(root, "✅ Done", 30)
        await w.settled(root)
        before = len(w.bot_posts(root))
        footers = lambda: sum("\n\n✅ Done · " in str(p["message"]) for p in w.bot_posts(root))  # noqa: E731
        footers_before = footers()
        requests = sum(w.server.stats.requests.values())
        first = await w.say("first [slow 0.5]", root)  # well within one edit interval
        second = await w.say("second", root)
        line = "⏳ 1 more prompt queued: it runs when this turn ends."

        def shown_queued() -> bool:  # now, or in an edit's history row
            return any(line in str(p["message"]) for p in w.server.store.posts.values())

        await w.wait_for(shown_queued, 10)  # while the first turn runs
        await w.answered(root, "echo #3: second", 30)
        # Its text may show before its footer: wait for the footer's edit too.
        await w.wait_for(lambda: footers() == footers_before + 2, 10)
        await w.settled(root)
        answers = [str(p["message"]) for p in w.bot_posts(root)][before:]
        assert len(answers) == 2, answers  # one post per answer, nothing else
        assert answers[0].startswith("echo #2: first") and "\n\n✅ Done · " in answers[0]
        assert answers[1].startswith("echo #3: second") and "\n\n✅ Done · " in answers[1]
        assert not any("queued" in a.lower() for a in answers)  # the final texts drop the line
        spent = sum(w.server.stats.requests.values()) - requests
        # Each answer at most a create and its final edit (one create when the agent's text
        # and its end of turn arrive in one read), and one edit to say "queued".
        assert spent <= 2 + 2 + 1, w.server.stats.requests
        assert not w.server.store.reactions_for(str(second["id"]))
        assert str(first["id"]) not in [r["post_id"] for r in w.server.store.reactions_for(str(first["id"]))]
