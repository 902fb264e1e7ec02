"""HTTP/1.1 for the fake Mattermost: h11 over one trio stream, plus the WebSocket upgrade.

Owns the bytes of a connection: reading requests (keep-alive, chunked bodies,
`Expect: 100-continue`), writing responses, and handing an upgraded stream to WebSocket
code. It knows nothing about Mattermost: an `HttpApp` decides every answer. It never
reads past the end of a request and never answers a request twice.
"""

from __future__ import annotations

import http
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs
import h11
import trio
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionType
from wsproto.utilities import generate_accept_token

RECEIVE_SIZE = 65536

Headers = tuple[tuple[str, str], ...]


@attrs.frozen
class Request:
    method: str
    target: str
    path: str
    query: Headers  # (name, value) pairs in order; a name may repeat
    headers: Headers  # names lower-cased
    body: bytes
    remote: str  # the peer's IP address

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def arg(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)

    @property
    def content_type(self) -> str:
        return self.header("content-type") or ""


@attrs.frozen
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: Headers = ()
    close: bool = False  # hang up after sending it

    def with_headers(self, extra: Headers) -> Response:
        return attrs.evolve(self, headers=self.headers + extra)


# Serves one upgraded connection; it owns the stream until it returns.
WebSocketHandler = Callable[[trio.SocketStream, WsConnection], Awaitable[None]]


class HttpApp(Protocol):
    max_body_size: int

    async def respond(self, request: Request) -> Response | None:
        """The answer, or None to hang up without answering (an injected fault)."""

    async def upgrade(self, request: Request) -> Response | WebSocketHandler:
        """A refusal to send, or the handler that takes over the accepted WebSocket."""

    def too_large(self, request: Request) -> Response:
        """The answer to a request whose body exceeds `max_body_size` (body not read)."""


@attrs.frozen
class _TooLarge:
    request: Request


async def serve_connection(stream: trio.SocketStream, app: HttpApp) -> None:
    """Answer requests on `stream` until the peer leaves or a response closes it."""
    conn = h11.Connection(h11.SERVER)
    remote = _peer_host(stream)
    try:
        while True:
            request = await _read_request(conn, stream, remote, app.max_body_size)
            if request is None:
                return
            if isinstance(request, _TooLarge):
                await _send_response(conn, stream, request.request, app.too_large(request.request))
                return
            if _wants_websocket(request):
                await _upgrade(conn, stream, request, app)
                return
            response = await app.respond(request)
            if response is None:
                return
            await _send_response(conn, stream, request, response)
            if response.close or conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
        return


async def _read_request(
    conn: h11.Connection, stream: trio.SocketStream, remote: str, max_body: int
) -> Request | _TooLarge | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            if conn.they_are_waiting_for_100_continue:
                await stream.send_all(
                    conn.send(h11.InformationalResponse(status_code=100, headers=[]))
                )
            conn.receive_data(await stream.receive_some(RECEIVE_SIZE))
        elif isinstance(event, h11.Request):
            head = event
            if _declared_length(event) > max_body:
                return _TooLarge(_build(event, b"", remote))
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_body and head is not None:
                return _TooLarge(_build(head, b"", remote))
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            return _build(head, bytes(body), remote)
        else:  # ConnectionClosed, or PAUSED after an upgrade request we did not accept
            return None


def _build(head: h11.Request, body: bytes, remote: str) -> Request:
    target = head.target.decode("ascii", "replace")
    path, _, query = target.partition("?")
    return Request(
        method=head.method.decode("ascii"),
        target=target,
        path=urllib.parse.unquote(path),
        query=tuple(urllib.parse.parse_qsl(query, keep_blank_values=True)),
        headers=tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers),
        body=body,
        remote=remote,
    )


def _declared_length(head: h11.Request) -> int:
    for name, value in head.headers:
        if name == b"content-length":
            return int(value)
    return 0


async def _send_response(
    conn: h11.Connection, stream: trio.SocketStream, request: Request, response: Response
) -> None:
    body = b"" if request.method == "HEAD" else response.body
    headers = [
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
        *response.headers,
    ]
    if response.close:
        headers.append(("connection", "close"))
    try:
        reason = http.HTTPStatus(response.status).phrase
    except ValueError:
        reason = ""
    data = conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
    if body:
        data += conn.send(h11.Data(data=body))
    data += conn.send(h11.EndOfMessage())
    await stream.send_all(data)


def _wants_websocket(request: Request) -> bool:
    upgrade = (request.header("upgrade") or "").lower()
    return request.method == "GET" and "websocket" in upgrade


async def _upgrade(
    conn: h11.Connection, stream: trio.SocketStream, request: Request, app: HttpApp
) -> None:
    outcome = await app.upgrade(request)
    key = request.header("sec-websocket-key")
    if isinstance(outcome, Response) or not key:
        refusal = outcome if isinstance(outcome, Response) else Response(400, b"bad handshake")
        await _send_response(conn, stream, request, attrs.evolve(refusal, close=True))
        return
    accept = generate_accept_token(key.encode("ascii")).decode("ascii")
    headers = [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-accept", accept),
    ]
    await stream.send_all(conn.send(h11.InformationalResponse(status_code=101, headers=headers)))
    trailing, _closed = conn.trailing_data
    await outcome(stream, WsConnection(ConnectionType.SERVER, trailing_data=trailing))


def _peer_host(stream: trio.SocketStream) -> str:
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return ""
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


# ---------------------------------------------------------------------------------------
# multipart/form-data


@attrs.frozen
class FormPart:
    name: str
    filename: str | None
    content_type: str
    data: bytes


_PARAM_RE = re.compile(r';\s*([\w*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')


def header_params(value: str) -> dict[str, str]:
    """Parameters of a header like `form-data; name="files"; filename="a.txt"`."""
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(value):
        key, quoted, bare = match.group(1).lower(), match.group(2), match.group(3)
        if quoted is not None:
            # Like Go's mime.ParseMediaType: quoted-pairs are unescaped, and nothing is
            # percent-decoded (HTML5 clients send `"` as %22; the server keeps "%22").
            params[key] = re.sub(r"\\(.)", r"\1", quoted)
        else:
            params[key] = bare or ""
    if "filename*" in params:  # RFC 5987: charset''percent-encoded
        _charset, _, encoded = params["filename*"].partition("''")
        params["filename"] = urllib.parse.unquote(encoded)
    return params


def parse_multipart(body: bytes, content_type: str) -> list[FormPart]:
    """Split a multipart/form-data body into its parts (ValueError if malformed)."""
    boundary = header_params(content_type).get("boundary")
    if not boundary:
        raise ValueError("multipart body without a boundary")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    segments = (b"\r\n" + body).split(delimiter)
    if len(segments) < 2:
        raise ValueError("multipart body without parts")
    parts: list[FormPart] = []
    for segment in segments[1:]:
        if segment.startswith(b"--"):
            return parts
        _padding, _, rest = segment.partition(b"\r\n")
        raw_headers, separator, data = (
            (b"", b"", rest[2:]) if rest.startswith(b"\r\n") else rest.partition(b"\r\n\r\n")
        )
        if raw_headers and not separator:
            raise ValueError("multipart part without a blank line")
        headers = _part_headers(raw_headers)
        disposition = header_params(headers.get("content-disposition", ""))
        parts.append(
            FormPart(
                disposition.get("name", ""),
                disposition.get("filename"),
                headers.get("content-type", ""),
                data,
            )
        )
    raise ValueError("multipart body without a closing delimiter")


def _part_headers(raw: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return headers
