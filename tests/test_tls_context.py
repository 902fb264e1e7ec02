"""The CA bundles are parsed only when the chat server is reached over TLS: over plain
http (a loopback or air-gapped server) start-up does not pay for them, and what it uses
instead still refuses any certificate."""

from __future__ import annotations

import ssl

import pytest

from supervisor.chat import tls
from supervisor.chat.mattermost import rest as rest_module
from supervisor.chat.mattermost.rest import MattermostRest


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = tls.ssl_context

    def counted() -> ssl.SSLContext:
        calls.append("bundle")
        return real()

    monkeypatch.setattr(tls, "ssl_context", counted)
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return calls


async def test_plain_http_parses_no_ca_bundle(built: list[str]) -> None:
    rest = MattermostRest("http://127.0.0.1:8065", "token")
    await rest.aclose()
    assert built == []


async def test_https_parses_the_bundles_once(built: list[str]) -> None:
    rest = MattermostRest("https://chat.example", "token")
    await rest.aclose()
    assert built == ["bundle"]


async def test_an_https_proxy_for_an_http_server_still_gets_the_bundles(
    built: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rest_module, "proxy_for", lambda _url: "https://proxy.example:3128")
    rest = MattermostRest("http://chat.internal", "token")
    await rest.aclose()
    assert built == ["bundle"]


def test_the_plain_http_context_still_refuses_every_certificate() -> None:
    context = tls.plain_http_context()
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0  # nothing it could trust
