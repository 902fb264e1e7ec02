# mypy: ignore-errors
# (It runs in mmpy_bot's own venv; mmpy_bot has no type hints.)
"""An mmpy_bot 2.2.1 echo bot, written the way mmpy_bot's README and example plugin write one.

Runs under benchmarks/.venv-mmpy (its own virtual environment: mmpy_bot pins httpx<0.28,
the supervisor's venv has 0.28). Usage: `python mmpy_echo.py URL TOKEN`. Every post it
sees (not its own) gets one reply in the same thread: `echo: <text>`.
"""

from __future__ import annotations

import logging
import sys

from mmpy_bot import Bot, Message, Plugin, Settings, listen_to


class Echo(Plugin):
    @listen_to(".")
    async def echo(self, message: Message) -> None:
        # As in mmpy_bot's examples: an async listener calling the (blocking) driver.
        self.driver.reply_to(message, f"echo: {message.text}")


def main(url: str, token: str) -> None:
    scheme_host, port = url.rsplit(":", 1)
    settings = Settings(
        MATTERMOST_URL=scheme_host,
        MATTERMOST_PORT=int(port),
        BOT_TOKEN=token,
        BOT_TEAM="unused",
        SSL_VERIFY=False,
        LOG_LEVEL=logging.WARNING,
    )
    Bot(settings=settings, plugins=[Echo()]).run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
