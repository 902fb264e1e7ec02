"""`supervisor check` for a Mattermost server: it answers, the token is accepted, whose
token it is (bot or user), and each allowed user exists.

The `*_result` functions are pure; `checks` makes the requests, one after the other,
each bounded by `Limits.network_s` (`MattermostRest`'s retry-forever methods rely on
that). Checks that need the server are reported as skipped (and failed) when it is
unreachable or the token is refused.

It must never print the token, or any URL credentials (the report is meant to be pasted
into a ticket).
"""

from __future__ import annotations

import functools
import socket
import ssl
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import httpx
import trio

from supervisor.chat import ChatError, ChatUser
from supervisor.chat.mattermost.config import MattermostConfig
from supervisor.chat.mattermost.rest import MattermostRest
from supervisor.chat.proxy import proxy_for
from supervisor.chat.tls import ssl_context
from supervisor.checks import CheckResult, Limits, clipped, skipped, timed_out, within

__all__ = [
    "SERVER_FIX",
    "TOKEN_FIX",
    "account_result",
    "checks",
    "shown_url",
    "unreachable_result",
]

TOKEN_FIX: Final = (
    "create a bot access token (System Console > Integrations > Bot Accounts > "
    "Create New Token) and put it in mattermost.token_file or SUPERVISOR_MATTERMOST_TOKEN"
)
SERVER_FIX: Final = (
    "check mattermost.url (scheme, host and port: the address you open Mattermost at "
    "in a browser) and that the server is running"
)



def shown_url(url: str) -> str:
    """`url` without credentials (`https://user:secret@host` is a valid URL)."""
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "the configured URL"



def unreachable_result(error: BaseException, url: str) -> CheckResult:
    """The server check, failed before any HTTP answer: say plainly what went wrong."""
    cause = _root_cause(error)
    host = urlsplit(url).hostname or url
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = getattr(cause, "verify_message", None) or "not trusted"
        return CheckResult(
            "server",
            False,
            f"TLS: the certificate of {host} was refused: {reason}",
            "install the CA that signed it into the system trust store (or point "
            "SSL_CERT_FILE at it), or fix the host name in mattermost.url",
        )
    if isinstance(cause, ssl.SSLError):
        return CheckResult(
            "server",
            False,
            f"TLS handshake with {host} failed: {getattr(cause, 'reason', None) or cause}",
            "use https:// only if the server speaks TLS on that port (http:// otherwise)",
        )
    if isinstance(cause, socket.gaierror):
        return CheckResult(
            "server",
            False,
            f"cannot resolve the host name {host}: {cause.strerror or cause}",
            "check the host name in mattermost.url and this machine's DNS",
        )
    if isinstance(cause, ConnectionRefusedError):
        return CheckResult("server", False, f"{url} refused the connection", SERVER_FIX)
    if isinstance(cause, OSError) and cause.strerror:
        return CheckResult("server", False, f"cannot reach {url}: {cause.strerror}", SERVER_FIX)
    what = clipped(str(cause)) or type(cause).__name__
    return CheckResult("server", False, f"cannot reach {url}: {what}", SERVER_FIX)


def _root_cause(error: BaseException) -> BaseException:
    """The innermost cause: httpx -> httpcore -> trio -> (an exception group of) OSError."""
    seen: set[int] = set()
    while id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, BaseExceptionGroup) and error.exceptions:
            error = error.exceptions[0]  # trio: one per address tried; the first says enough
        elif error.__cause__ is not None:
            error = error.__cause__
        elif error.__context__ is not None:  # httpcore re-raises `from None`: look anyway
            error = error.__context__
        else:
            break
    return error


def not_mattermost_result(error: ChatError, url: str) -> CheckResult:
    answer = f"{error.status}" if error.status else "an answer"
    if error.error_id == "malformed_response":
        answer = f"a {error.status} that is not Mattermost's JSON"
    return CheckResult(
        "server",
        False,
        f"{url} answered {answer} to /api/v4/system/ping: it does not look like Mattermost",
        "set mattermost.url to the address you open Mattermost at in a browser, without /api/v4",
    )


def unavailable_result(error: ChatError, url: str) -> CheckResult:
    return CheckResult(
        "server",
        False,
        f"{url} answered {error.status} to /api/v4/system/ping: the server (or the proxy in front of it) is unavailable",
        "check that Mattermost runs and is healthy; `run` waits for it",
    )


def ping_result(status: str, url: str) -> CheckResult:
    if status.upper() == "OK":
        return CheckResult("server", True, f"{url} answers (status OK)")
    shown = clipped(status) or "no status"
    return CheckResult(
        "server", False, f"{url} answers but reports {shown}", "check the server's health"
    )


def token_refused_result(error: ChatError) -> CheckResult:
    if error.status == 401:
        return CheckResult("token", False, "the token was refused (401)", TOKEN_FIX)
    said = clipped(error.message) or error.error_id or "no reason given"
    return CheckResult("token", False, f"GET /users/me failed: {error.status} {said}", TOKEN_FIX)


def account_result(me: ChatUser) -> CheckResult:
    if me.is_bot:
        return CheckResult("account", True, f"@{me.username}, a bot account")
    return CheckResult(
        "account",
        True,
        f"@{me.username}, a user account: it works, but a bot account is recommended",
        "create a bot (System Console > Integrations > Bot Accounts) and use its token, "
        "so answers are not posted as a person",
    )


def allowed_user_name(username: str) -> str:
    return f"allowed user @{username}"


def allowed_user_result(username: str, user: ChatUser | None, url: str) -> CheckResult:
    name = allowed_user_name(username)
    if user is None:
        return CheckResult(
            name,
            False,
            f"no user @{username} on {url}",
            "check the spelling in mattermost.allowed_users (usernames, not display "
            "names) or create the account",
        )
    return CheckResult(name, True, "exists" + (" (a bot account)" if user.is_bot else ""))


# --- checks that talk to the server ----------------------------------------------------


class _Witness(httpx.AsyncBaseTransport):
    """A transport that remembers the last error: `MattermostRest` reduces an unreachable
    server to the error's class name, and the doctor must say *why* (refused, DNS, TLS)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.error: Exception | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except Exception as exc:
            self.error = exc
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()


async def server_check(rest: MattermostRest, witness: _Witness, url: str) -> CheckResult:
    try:
        return ping_result(await rest.ping(), url)
    except ChatError as error:
        if error.status == 0:
            return unreachable_result(witness.error or error, url)
        if error.status >= 500:  # a proxy in front of a stopped server, or an unhealthy one
            return unavailable_result(error, url)
        return not_mattermost_result(error, url)
    except httpx.HTTPError as error:  # not worth a retry to the client: a bad URL, say
        return unreachable_result(error, url)


async def token_check(rest: MattermostRest) -> tuple[CheckResult, ChatUser | None]:
    try:
        me = await rest.get_me()
    except ChatError as error:
        return token_refused_result(error), None
    return CheckResult("token", True, "accepted"), me


async def allowed_user_check(rest: MattermostRest, username: str, url: str) -> CheckResult:
    try:
        user = await rest.user_by_username(username)
    except ChatError as error:
        said = clipped(error.message) or error.error_id or "no reason given"
        return CheckResult(
            allowed_user_name(username),
            False,
            f"cannot look it up: {error.status} {said}",
            "the bot needs permission to read users (a bot or user account has it)",
        )
    return allowed_user_result(username, user, url)


async def checks(mattermost: MattermostConfig, limits: Limits) -> list[CheckResult]:
    """Server, token, account, then one line per allowed user; each request bounded."""
    url = shown_url(mattermost.url)
    users = mattermost.allowed_users
    # The environment's proxy, as `run` takes it: else behind one `check` says "cannot reach".
    witness = _Witness(httpx.AsyncHTTPTransport(verify=ssl_context(), proxy=proxy_for(mattermost.url)))
    rest = MattermostRest(
        mattermost.url,
        mattermost.token,
        transport=witness,
        requests_per_second=mattermost.requests_per_second,
    )
    wait = limits.network_s
    try:
        server = await within(
            wait,
            timed_out("server", wait, f"no answer from {url}", SERVER_FIX),
            lambda: server_check(rest, witness, url),
        )
        if not server.ok:
            reason = "the server is not reachable"
            rest_of = ["token", "account", *map(allowed_user_name, users)]
            return [server, *(skipped(name, reason) for name in rest_of)]
        late: tuple[CheckResult, ChatUser | None] = (
            timed_out("token", wait, "no answer to GET /users/me", "check the server's health"),
            None,
        )
        token, me = await within(wait, late, lambda: token_check(rest))
        if me is None:
            reason = "needs a valid token"
            rest_of = ["account", *map(allowed_user_name, users)]
            return [server, token, *(skipped(name, reason) for name in rest_of)]
        results = [server, token, account_result(me)]
        for username in users:
            slow = timed_out(allowed_user_name(username), wait, "no answer", "")
            lookup = functools.partial(allowed_user_check, rest, username, url)
            results.append(await within(wait, slow, lookup))
        return results
    finally:
        with trio.CancelScope(shield=True):
            await rest.aclose()

