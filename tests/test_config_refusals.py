"""Values that used to pass the configuration's checks and fail later (a hang, a crash at
start, an agent no name reaches): refused at load, in one sentence naming the key."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from supervisor.config import ConfigError, config_from_dict, load_config
from tests.test_config import assert_one_sentence, make_home, minimal

TELEGRAM_TOKEN = "123456789:AAEexampleexampleexampleexampleexa"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path)


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return {"HOME": str(home)}


def test_a_token_file_that_would_block_is_refused_without_waiting(tmp_path: Path, env: dict[str, str]) -> None:
    """A FIFO (or a terminal) waits for a writer: a start would hang with the stop signals
    held, beyond SIGTERM and Ctrl-C. Loaded in a thread, so that a regression fails here
    instead of hanging the tests."""
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    data: dict[str, Any] = {"telegram": {"token_file": str(fifo), "allowed_user_ids": [1]}}
    caught: list[BaseException] = []

    def load() -> None:
        try:
            config_from_dict(data, env)
        except BaseException as exc:  # handed to the test's thread
            caught.append(exc)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    loader.join(10)
    if loader.is_alive():  # let the blocked read end (it sees the end of the file)
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        loader.join(10)
        pytest.fail("reading the token file waited for a writer")
    assert len(caught) == 1 and isinstance(caught[0], ConfigError), caught
    assert_one_sentence(caught[0], "telegram.token_file")
    assert str(caught[0]).startswith('telegram.token_file "/') and str(caught[0]).endswith('" is not a regular file')


def test_a_token_file_that_is_a_regular_file_still_loads(tmp_path: Path, env: dict[str, str]) -> None:
    token = tmp_path / "token"
    token.write_text(f"{TELEGRAM_TOKEN}\n")
    data = {"telegram": {"token_file": str(token), "allowed_user_ids": [1]}}
    telegram = config_from_dict(data, env).telegram
    assert telegram is not None and telegram.token == TELEGRAM_TOKEN


@pytest.mark.parametrize("value", [10**400, -(10**400), 2**63, -(2**63)], ids=["huge", "-huge", "2**63", "-2**63"])
def test_an_integer_beyond_64_bits_is_refused_naming_its_key(home: Path, env: dict[str, str], value: int) -> None:
    """It would crash `run` later (OverflowError turning it into seconds)."""
    data = minimal(home)
    data["render"] = {"edit_interval_ms": value}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, env)
    assert_one_sentence(caught.value, "render.edit_interval_ms")
    assert str(caught.value) == (
        "render.edit_interval_ms must be between -9223372036854775807 and 9223372036854775807"
    )


def test_the_largest_64_bit_integer_loads(home: Path, env: dict[str, str]) -> None:
    data = minimal(home)
    data["agent"] = {"turn_timeout_s": 2**63 - 1}
    assert config_from_dict(data, env).agent.turn_timeout_s == 2**63 - 1


def test_an_integer_too_long_for_python_to_read_is_one_sentence(tmp_path: Path, env: dict[str, str]) -> None:
    """tomllib raises a plain ValueError (not TOMLDecodeError) past 4300 digits."""
    path = tmp_path / "supervisor.toml"
    path.write_text("[web]\n[agent]\nturn_timeout_s = " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env)
    assert caught.value.key == str(path) and "\n" not in str(caught.value)
    assert str(caught.value) == (
        f"{path} is not valid TOML: Exceeds the limit (4300 digits) for integer string conversion"
    )


@pytest.mark.parametrize("protocol", ["claude", "acp"])
def test_agents_default_beside_agents_named_as_the_default_protocol_is_refused(
    home: Path, env: dict[str, str], protocol: str
) -> None:
    """With `[agents.<protocol of [agent]>]`, `[agent]` is called "default": an
    `[agents.default]` as well would hide it from every `agent=` and take its "(default)"."""
    data = minimal(home)
    data["agent"] = {"protocol": protocol, "command": ["claude"]}
    data["agents"] = {protocol: {"command": ["x"]}, "default": {"protocol": "acp", "command": ["opencode", "acp"]}}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, env)
    assert_one_sentence(caught.value, "agents.default")
    assert str(caught.value) == (
        f'agents.default cannot be used beside [agents.{protocol}]: [agent] is then called "default"; '
        "rename one of them"
    )
    del data["agents"][protocol]  # alone, an [agents.default] is an agent like any other
    assert config_from_dict(data, env).default_agent_name == protocol
