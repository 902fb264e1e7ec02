"""What a restart finds half done in a thread: each is done once, none is lost.

Real supervisor (in this process, or a child killed with SIGKILL), the fake Mattermost
server and real fake-agent processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from supervisor.runtime import store as store_module
from tests.harness import World, world
from tests.test_full_disk import _Refusing

SLOW = "[slow 3] a long answer"


async def _serving(w: World) -> None:
    with trio.fail_after(30):
        await w.server.wait_for_websocket(count=1)


def _runs_of(w: World, text: str) -> int:
    return sum(prompts.count(text) for prompts in w.prompts_by_process().values())


async def test_a_rerun_waiting_behind_a_turn_is_run_after_a_kill(tmp_path: Path) -> None:
    """🔁 on a cut notice while another turn runs: the rerun waits behind that turn. The 🔁
    is no post a catch-up fetches again, and its offer was gone from the record, so a kill
    (or a stop) then lost it without a word; the next start runs it, once."""
    with trio.fail_after(120):
        async with world(tmp_path) as w:
            w.spawn()
            await _serving(w)
            root = await w.new_session("one")
            await w.say(SLOW, root)
            await w.answered(root, "a long answer", timeout=30)  # its turn streams
            w.kill()
            w.spawn()
            await w.answered(root, "that turn was cut", timeout=30)
            notice = next(p for p in w.bot_posts(root) if "that turn was cut" in str(p["message"]))
            await w.wait_for(lambda: "🔁" in str(w.post(str(notice["id"]))["message"]), timeout=30)
            await w.say("[slow 6] second", root)
            await w.answered(root, "second", timeout=30)  # its turn streams
            await w.react(str(notice["id"]), "repeat")
            await w.answered(root, "1 more prompt queued", timeout=30)  # taken, behind that turn
            # Any later moment: the record without the offer is on disk (else a start reads
            # the 🔁 back from the offer's post, as after a gap in the WebSocket).
            await trio.sleep(1)
            assert _runs_of(w, SLOW) == 1
            w.kill()
            w.spawn()
            await w.wait_for(lambda: _runs_of(w, SLOW) == 2, timeout=30)
            await w.wait_for(lambda: w.thread_text(root).count("Done") >= 1, timeout=30)
            await trio.sleep(1)
            assert _runs_of(w, SLOW) == 2  # the rerun, once
            w.kill()


async def test_a_get_posts_its_file_once_its_mark_is_on_disk_and_once_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`!get` posts its file from a task of its own, beside the outbox: started before the
    command's mark was durable, it posted while the disk refused the mark, and the next
    start, handling `!get` again, posted it a second time."""
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            supervisor = await w.start()
            root = await w.new_session("one")
            await w.say("hello", root)
            await w.answered(root, "echo #1: hello")
            (w.work / "one" / "report.txt").write_text("data")
            disk = _Refusing(monkeypatch, store_module, "append_line")
            await w.say("!get report.txt", root)
            await w.wait_for(lambda: supervisor.store.refusals >= 2)
            await trio.sleep(1)

            def files() -> int:
                return sum("📎" in str(p["message"]) for p in w.bot_posts(root))

            assert files() == 0  # its mark is not on disk: a restart handles `!get` again
            await w.stop()
            disk.on = False
            await w.start()
            await w.wait_for(lambda: files() == 1, timeout=30)
            await trio.sleep(1)
            assert files() == 1
