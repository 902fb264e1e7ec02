"""Who may reach the web chat: the listen address rule, the access token, the Origin rule.

Pure functions, plus the one file this module writes (`<state.dir>/web-token`). The ASGI
app asks these functions; it never decides on its own whether a request is allowed.
Never logs the token or returns it in an error message.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import attrs

log = logging.getLogger(__name__)

TOKEN_FILE = "web-token"
TOKEN_BYTES = 32
LISTEN_KEY = "web.listen"
DEFAULT_LISTEN = "127.0.0.1:8765"  # PRODUCT.md: the embedded default


@attrs.frozen
class ListenAddress:
    host: str
    port: int


def parse_listen(listen: str) -> ListenAddress | str:
    """`host:port` (IPv6 in brackets) -> the address, or a sentence naming `web.listen`."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host:
        return f"{LISTEN_KEY} must be HOST:PORT (for example 127.0.0.1:8765), not {listen!r}"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        return f"{LISTEN_KEY} has no valid port (0-65535) in {listen!r}"
    return ListenAddress(host, port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_problem(listen: str, allow_remote: bool) -> str | None:
    """None when `listen` may be served; else one sentence for the config layer (exit 2)."""
    parsed = parse_listen(listen)
    if isinstance(parsed, str):
        return parsed
    if not allow_remote and not is_loopback(parsed.host):
        return (
            f"{LISTEN_KEY} = {listen!r} is not a loopback address; "
            "set web.allow_remote = true to serve the web chat to other machines"
        )
    return None


def stored_token(path: Path) -> str:
    """The token in `path` ("" when there is none); `UnicodeDecodeError` when the file is
    damaged: no token we make holds anything but ASCII, and no browser could send one."""
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return ""


def load_or_create_token(state_dir: Path) -> str:
    """The access token, created once (0600, never group- or world-readable). A damaged
    file is replaced, as a missing one: the token is ours, and the new address is printed."""
    path = state_dir / TOKEN_FILE
    try:
        token = stored_token(path)
    except UnicodeDecodeError:
        log.warning("%s is damaged (not ASCII text): a new token replaces it, and the web chat's "
                    "address changes with it (the new one is printed once it listens)", path)  # fmt: skip
        token = ""
    if token:
        return token
    state_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    partial = path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(token + "\n")
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)
    return token


def cookie_name(port: int) -> str:
    # Cookies ignore ports: two supervisors on one host must not overwrite each other's.
    return f"supervisor_web_{port}"


# The cookie outlives a browser's restart, and each page load and each WebSocket
# connection renews it: a page opened (or a tab reconnected, after a restart say) at
# least once a month never needs the printed address again (the token changes only
# with a new state directory, and the page says so then).
COOKIE_MAX_AGE_S = 30 * 24 * 3600


def session_cookie(port: int, token: str) -> str:
    return f"{cookie_name(port)}={token}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict"


def token_matches(given: str, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def cookie_token(cookie_headers: Iterable[str], port: int) -> str:
    """Our cookie's value ("" without it). Parsed by hand: other local apps set cookies
    on this host too (cookies ignore ports), and `SimpleCookie` drops a whole header, or
    stops before ours, at one it cannot parse (`x`, `version=1`, a JSON value, a space).
    Our token is URL-safe: never quoted."""
    name = cookie_name(port)
    for header in cookie_headers:
        for pair in header.split(";"):
            key, sep, value = pair.partition("=")
            if sep and key.strip() == name:
                return value.strip()
    return ""


def query_token(query_string: bytes) -> str:
    values = urllib.parse.parse_qs(query_string.decode("latin-1")).get("token", [])
    return values[0] if values else ""


def same_origin(origin: str | None, host: str | None, forwarded_proto: str | None = None) -> bool:
    """The browser's `Origin` names exactly the address the page was served from: ours
    over http, or over https through a reverse proxy that ends TLS and says so
    (`X-Forwarded-Proto: https`, which no page's script can add to a WebSocket upgrade,
    nor to a request across sites without a preflight we never allow). Without that word
    an https Origin is another site's: one on port 443 of a host where we serve port 80
    would name the same `Host`."""
    if not origin or not host:
        return False
    schemes = ("http", "https") if (forwarded_proto or "").lower() == "https" else ("http",)
    return origin.lower() in {f"{scheme}://{host}".lower() for scheme in schemes}
