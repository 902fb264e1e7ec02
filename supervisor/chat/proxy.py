"""The proxy the environment names, for every HTTP client and the Mattermost WebSocket.

httpx takes the proxy for REST itself (`proxy_for` names it). The WebSocket is a stream we
open ourselves, so behind a proxy it goes through an HTTP CONNECT tunnel (`open_tunnel`),
the way browsers reach a WebSocket through a forward proxy. h11 (httpcore's, already in
the zipapp) reads the proxy's answer. The proxy's credentials (user:password in its URL)
go into Proxy-Authorization and never into a log line.
"""

from __future__ import annotations

import base64
import logging
import ssl
import urllib.parse
import urllib.request

import h11
import trio

from supervisor.chat import tls

log = logging.getLogger(__name__)

_MAX_ANSWER = 64 * 1024  # a proxy's answer to CONNECT is a few headers


class ProxyRefused(OSError):
    """The proxy would not open the tunnel (its status and reason, no credentials)."""


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (https_proxy, all_proxy, no_proxy...);
    ws:// and wss:// take http's and https's. Only an HTTP(S) proxy: another kind (a SOCKS
    `all_proxy`, as proxy tools set) is not used, and the log says so once, rather than
    the start failing on a transport that cannot take it."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme) or proxies.get("all") or None
    if proxy is None or urllib.parse.urlsplit(proxy).scheme in ("http", "https"):
        return proxy
    if proxy not in _NOT_USED_SAID:
        _NOT_USED_SAID.add(proxy)
        log.warning("the proxy %s the environment names is not an HTTP proxy, which is all the "
                    "supervisor can use: connecting without it (set https_proxy to an HTTP proxy, "
                    "or no_proxy to the server, to say otherwise)", described(proxy))
    return None


_NOT_USED_SAID: set[str] = set()  # the proxies the log said are not used


def described(proxy: str) -> str:
    """The proxy's URL for a log line: its credentials left out."""
    parts = urllib.parse.urlsplit(proxy)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or _default_port(parts.scheme)}"


async def open_tunnel(
    proxy: str, host: str, port: int, proxy_tls: ssl.SSLContext | None = None
) -> trio.abc.Stream:
    """A stream to `host:port` through the proxy at `proxy` (http:// or https://); an
    https:// proxy is trusted as REST trusts it (`tls.ssl_context`, or `proxy_tls`)."""
    parts = urllib.parse.urlsplit(proxy)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProxyRefused(f"unsupported proxy {described(proxy)}: only http:// and https:// proxies are")
    proxy_port = parts.port or _default_port(parts.scheme)
    stream: trio.abc.Stream
    if parts.scheme == "https":
        stream = await trio.open_ssl_over_tcp_stream(
            parts.hostname, proxy_port, ssl_context=proxy_tls or tls.ssl_context(), https_compatible=True
        )
    else:
        stream = await trio.open_tcp_stream(parts.hostname, proxy_port)
    try:
        await _connect(stream, f"{host}:{port}", parts)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def _connect(stream: trio.abc.Stream, target: str, proxy: urllib.parse.SplitResult) -> None:
    headers = [("Host", target)]
    if proxy.username is not None:
        user = urllib.parse.unquote(proxy.username)
        secret = urllib.parse.unquote(proxy.password or "")
        token = base64.b64encode(f"{user}:{secret}".encode()).decode()
        headers.append(("Proxy-Authorization", f"Basic {token}"))
    conn = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=_MAX_ANSWER)
    await stream.send_all(conn.send(h11.Request(method="CONNECT", target=target, headers=headers)))
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(_MAX_ANSWER)
            if not data:
                raise ProxyRefused(f"the proxy {described(proxy.geturl())} closed the connection")
            conn.receive_data(bytes(data))
            continue
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response):
            if 200 <= event.status_code < 300:
                return  # the tunnel is open: what follows is the server's
            reason = event.reason.decode(errors="replace")
            raise ProxyRefused(f"the proxy {described(proxy.geturl())} answered {event.status_code} {reason}")
        raise ProxyRefused(f"the proxy {described(proxy.geturl())} answered with no status")


def _default_port(scheme: str) -> int:
    return 443 if scheme in ("https", "wss") else 80
