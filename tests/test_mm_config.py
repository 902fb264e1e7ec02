"""`mattermost.url` with a user and password in it is refused at load: they would be
posted into chat in every permalink, logged, and sent in the WebSocket's Host header.
The refusal names the key and never repeats the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.cli import main
from supervisor.config import ConfigError, config_from_dict
from tests.test_config import assert_one_sentence, make_home, minimal

PASSWORD = "hunter2-s3cret"


@pytest.mark.parametrize(
    "url",
    [
        f"https://bot:{PASSWORD}@chat.example.com",
        f"https://{PASSWORD}@chat.example.com/mm/",
        f"http://bot:{PASSWORD}@127.0.0.1:8065",
        f"ftp://bot:{PASSWORD}@chat.example.com",  # refused for the password first
        f"https://bot:{PASSWORD}@chat.example.com/api/v4",  # the same
        f"bot:{PASSWORD}@chat.example.com",  # no scheme: still never quoted
        "https://@chat.example.com",
    ],
)
def test_a_url_with_credentials_is_one_sentence_without_them(tmp_path: Path, url: str) -> None:
    home = make_home(tmp_path)
    data = minimal(home)
    data["mattermost"]["url"] = url
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, {"HOME": str(home)})
    assert_one_sentence(caught.value, "mattermost.url")
    assert "user name or password" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_so_is_one_from_the_environment(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    env = {"HOME": str(home), "SUPERVISOR_MATTERMOST_URL": f"https://bot:{PASSWORD}@chat.example.com"}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(minimal(home), env)
    assert_one_sentence(caught.value, "mattermost.url")
    assert PASSWORD not in str(caught.value)


def test_an_at_sign_past_the_host_is_no_credential(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    data = minimal(home)
    data["mattermost"]["url"] = "https://chat.example.com/team@corp"
    config = config_from_dict(data, {"HOME": str(home)})
    assert config.mattermost is not None
    assert config.mattermost.url == "https://chat.example.com/team@corp"


def test_the_command_exits_2_with_the_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = make_home(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SUPERVISOR_MATTERMOST_URL", raising=False)
    path = tmp_path / "supervisor.toml"
    path.write_text(
        "[mattermost]\n"
        f'url = "https://bot:{PASSWORD}@chat.example.com"\n'
        'token_file = "~/.config/supervisor/token"\n'
        'allowed_users = ["alice"]\n'
    )
    assert main(["check", "--config", str(path)]) == 2
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "mattermost.url" in said and PASSWORD not in said
