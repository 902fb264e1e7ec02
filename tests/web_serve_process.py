"""The web chat and the stand-in core as a process of their own, for kill -9 tests.

    python -m tests.web_serve_process STATE_DIR PORT PROMPTS_LOG

Prints the URL (with the token) on one line once serving; appends every prompt the core
receives to PROMPTS_LOG (one line each, flushed), so a test can count deliveries across
processes that were killed without warning.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from supervisor.chat.web.front import PageConfig
from supervisor.chat.web.server import RunningWebChat, WebSettings, serve_web_chat
from tests.web_core import StandInCore


class LoggedCore(StandInCore):
    log: Path | None = None

    async def _dispatch(self, event: object) -> None:
        await super()._dispatch(event)  # type: ignore[arg-type]
        if self.prompts_seen and LoggedCore.log is not None:
            with LoggedCore.log.open("a") as out:
                for text in self.prompts_seen:
                    out.write(text + "\n")
                out.flush()
            self.prompts_seen.clear()


async def main(state_dir: Path, port: int) -> None:
    settings = WebSettings(
        state_dir=state_dir, listen=f"127.0.0.1:{port}", page=PageConfig(default_cwd="~")
    )
    async with trio.open_nursery() as nursery:
        chat: RunningWebChat = await nursery.start(serve_web_chat, settings)
        nursery.start_soon(LoggedCore(chat.front, word_delay=0.03).run)
        print(chat.url, flush=True)


if __name__ == "__main__":
    LoggedCore.log = Path(sys.argv[3])
    trio.run(main, Path(sys.argv[1]), int(sys.argv[2]))
