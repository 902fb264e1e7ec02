"""Log lines: a token never reaches stderr, not even inside a traceback."""

from __future__ import annotations

import json
import logging

import pytest

from supervisor import logs

TOKEN = "123456:AAF-secret-telegram-token"


@pytest.fixture(autouse=True)
def _restore_root_logger() -> object:
    # `setup` sets the process's logging: what it changes is put back for the other tests
    # (httpx's own level too, which tests of the Telegram client read).
    root = logging.getLogger()
    handlers, level, json_lines = root.handlers[:], root.level, logs._json_lines
    levels = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "trio-websocket")}
    yield
    root.handlers[:], root.level, logs._json_lines = handlers, level, json_lines
    for name, kept in levels.items():
        logging.getLogger(name).setLevel(kept)


def _log_a_failure_quoting_the_token() -> None:
    try:
        raise RuntimeError(f"Client error for url 'https://api.telegram.org/bot{TOKEN}/getMe'")
    except RuntimeError:
        logging.getLogger("supervisor.test").exception("the call to bot%s failed", TOKEN)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_token_in_a_message_or_its_traceback_is_masked(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup(fmt, secrets=[TOKEN])
    _log_a_failure_quoting_the_token()
    err = capsys.readouterr().err
    assert TOKEN not in err
    assert "RuntimeError: Client error for url 'https://api.telegram.org/bot***/getMe'" in err
    if fmt == "json":
        entry = json.loads(err.strip().splitlines()[-1])
        assert entry["msg"] == "the call to bot*** failed" and "Traceback" in entry["exc"]
