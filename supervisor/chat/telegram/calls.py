"""The Bot API's wire: one method call to Telegram, paced, retried, the token kept safe.

This module owns the HTTP session, the pacing (per chat and overall), the retry loop and
the token; `client.BotApi` builds the Bot API's methods on it. Each call retries
transient failures (connection errors, timeouts, a proxy's refusal, 5xx, 429) forever,
with backoff or the server's `retry_after`; the caller bounds it with a cancel scope. An
answer that is not the Bot API's (a captive portal's page) raises `Unreadable`, whatever
its HTTP status: it is never taken for Telegram's refusal. A retry's pause ends
early once Telegram answers another call (`retry.ServerAnswers`: the long poll, say).
Permanent refusals raise a `BotApiError` subclass. A 400 "message is not modified" is
success (the message already shows what we wanted). Once the front end runs the token's
watch (`token`), a call refused with 401 waits until the token is taken again: a token
refused while we run holds what we send, it does not drop it.

The token is part of every URL (`/bot<token>/<method>`), and httpx writes URLs into its log
lines and its exceptions. So the token never enters httpx's client layer: requests are
built with a placeholder in its place, and `_TokenTransport`, the last step before the
wire, swaps the real token in. Log lines, exceptions, `response.request` and tracebacks
only ever see the placeholder. Text a server sends back (an error description, a proxy's
page) is scrubbed of the token too before it reaches an exception.

It must never:
- put the token into a log line, an exception message or a value it returns;
- send a message-like request without taking a slot from the chat's pacer, so a streaming
  answer does not provoke Telegram's flood control (about one message per second per
  chat, ~30 per second overall: ../shared/reference/telegram/FACTS.md);
- take a `timeout=`: the per-request httpx timeout only detects dead connections.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
import urllib.parse
from typing import Any, Final

import attrs
import httpx
import trio

from supervisor.chat import ChatError, tls
from supervisor.chat.proxy import proxy_for
from supervisor.chat.retry import RetryPauses, ServerAnswers, server_is_up
from supervisor.chat.telegram import codec
from supervisor.chat.telegram.codec import Failure, JSONObject, MalformedReply
from supervisor.chat.telegram.config import TOKEN_SHAPE
from supervisor.chat.token import OwnRefusal, TokenWatch
from supervisor.core.backoff import REST_BACKOFF, Backoff, listening_pace
from supervisor.core.ratelimit import TokenBucket

log = logging.getLogger("supervisor.telegram")

API_URL: Final = "https://api.telegram.org"

# What httpx sees instead of the token (see the module docstring).
_PLACEHOLDER: Final = "REDACTED"
# A dead TCP connection shows up as a timeout; long polls add their own poll time to it.
REQUEST_TIMEOUT: Final = 30.0
CHAT_BUCKETS_KEPT: Final = 256  # past this, the per-chat buckets that are at rest go
# A bogus retry_after must not stall the supervisor for a day; the caller's scope still
# bounds the whole call, this only bounds one wait.
_LONGEST_SERVER_WAIT = 300.0
_NOT_MODIFIED = "message is not modified"

# Worth retrying: the request may not have reached the server, or the server failed.
# A proxy that will not open the way (its CONNECT refused) is an outage too, and so is a
# body that does not decode (bad gzip from a broken proxy): an answer lost on the way.
_TRANSIENT_ERRORS = (
    httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError, httpx.DecodingError,
)  # fmt: skip


# --- errors ------------------------------------------------------------------------


class BotApiError(ChatError):
    """Telegram refused a request for good. `status` is the Bot API's `error_code`
    (0: not reachable, only from calls made with `retry=False`)."""

    def __init__(self, method: str, status: int, description: str = "") -> None:
        super().__init__(status, method, description)
        self.method = method
        self.description = description


class BadRequest(BotApiError):
    """400: the request itself is wrong (bad HTML, text too long, unknown message...)."""


class Unauthorized(BotApiError):
    """401: the token is not (or no longer) valid."""


class Forbidden(BotApiError):
    """403: e.g. the person blocked the bot, or never started a chat with it."""


class NotFound(BotApiError):
    """404: also what an older Bot API server answers for a method it does not know."""


class Conflict(BotApiError):
    """409: another program polls this token, or a webhook is set."""


class TooManyRequests(BotApiError):
    """429, from a call made with `retry=False` (others wait it out)."""

    def __init__(self, method: str, description: str, retry_after: float) -> None:
        super().__init__(method, 429, description)
        self.retry_after = retry_after


class Unreadable(BotApiError):
    """An answer that is not the Bot API's (a proxy's or a captive portal's page, a body cut
    short): `status` is its HTTP status. Telegram may never have seen the request."""

    @property
    def for_good(self) -> bool:
        return False  # not Telegram's word: what it says of the call is unknown


class Unreachable(BotApiError):
    """No answer (connection refused, DNS, TLS, timeout), from a call made with
    `retry=False`. The detail is the error's class name and cause, never a URL."""

    def __init__(self, method: str, detail: str) -> None:
        super().__init__(method, 0, detail)


# What one call may raise besides a cancel: a task beside the updates (a courtesy, a
# draft's refresh) catches these, so that no answer of Telegram's (or of a proxy's, or a
# misconfiguration's) ends the front end.
CALL_FAILURES = (BotApiError, MalformedReply, httpx.HTTPError)

_ERRORS: dict[int, type[BotApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
}


# --- pacing ------------------------------------------------------------------------


@attrs.frozen
class Pacing:
    """How fast we send, so that Telegram's flood control rarely has to say 429."""

    per_chat_rate: float = 1.0  # message-like requests per second, per chat
    per_chat_burst: float = 3.0
    overall_rate: float = 25.0  # every request, all chats (Telegram: ~30/s)
    overall_burst: float = 25.0
    # Requests that count as a message in a chat. Edits and drafts have no documented
    # limit, but Telegram counts them in practice; answering a button press does not.
    chat_methods: frozenset[str] = frozenset(
        {
            "sendMessage",
            "sendDocument",
            "sendPhoto",
            "editMessageText",
            "editMessageReplyMarkup",
            "sendMessageDraft",
            "createForumTopic",
        }
    )


class _Pacer:
    """The token buckets: one overall, one per chat. Owned by one `BotApi`."""

    def __init__(self, pacing: Pacing) -> None:
        self.pacing = pacing
        self._overall = TokenBucket(pacing.overall_rate, pacing.overall_burst)
        self._chats: dict[int | str, TokenBucket] = {}

    def buckets(self, method: str, chat_id: int | str | None) -> list[TokenBucket]:
        if chat_id is None or method not in self.pacing.chat_methods:
            return [self._overall]
        return [self._chat(chat_id), self._overall]

    def _chat(self, chat_id: int | str) -> TokenBucket:
        chat = self._chats.get(chat_id)
        if chat is None:
            if len(self._chats) >= CHAT_BUCKETS_KEPT:
                self._forget_rested(trio.current_time())
            chat = TokenBucket(self.pacing.per_chat_rate, self.pacing.per_chat_burst)
            self._chats[chat_id] = chat
        return chat

    def _forget_rested(self, now: float) -> None:
        """Drop the buckets of chats that are full and not held: a new one is the same (each
        stranger refused once made one, kept for ever)."""
        self._chats = {
            chat: bucket for chat, bucket in self._chats.items()
            if bucket.level(now) < bucket.burst or bucket.held(now) > 0
        }  # fmt: skip

    async def wait(self, method: str, chat_id: int | str | None) -> None:
        if chat_id is not None and method not in self.pacing.chat_methods and chat_id in self._chats:
            # Not counted as a message (typing), but a hold on its chat holds it too.
            await trio.sleep(self._chats[chat_id].held(trio.current_time()))
        for bucket in self.buckets(method, chat_id):
            while True:
                await trio.sleep(bucket.take(trio.current_time()))
                # A pause that began while we waited voids the slot: take a new one after
                # it, so the queue behind a 429 does not start all at once.
                if bucket.held(trio.current_time()) <= 0:
                    break

    def pause(self, method: str, chat_id: int | str | None, seconds: float) -> None:
        # A 429 on a call about one chat (a message, typing) pauses that chat; on anything
        # else, everything: a typing signal held back must not hold the long poll.
        (self._overall if chat_id is None else self._chat(chat_id)).pause(trio.current_time(), seconds)


# --- the token, kept out of httpx ------------------------------------------------------


class _TokenTransport(httpx.AsyncBaseTransport):
    """Swaps the placeholder in the path for the token, just before the wire."""

    def __init__(self, inner: httpx.AsyncBaseTransport, token: str) -> None:
        self._inner = inner
        self._token = token
        self._marker = f"/bot{_PLACEHOLDER}/".encode("ascii")
        self._real = f"/bot{token}/".encode("ascii")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        real_url = request.url.copy_with(
            raw_path=request.url.raw_path.replace(self._marker, self._real, 1)
        )
        outgoing = httpx.Request(
            request.method,
            real_url,
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        try:
            return await self._inner.handle_async_request(outgoing)
        except httpx.HTTPError as exc:
            if self._token not in str(exc):
                raise
            # Some transport quoted the URL: the same error, without it, and without
            # the original in the chain (a traceback would print it).
            clean = type(exc)(str(exc).replace(self._token, _PLACEHOLDER))
        raise clean from None

    async def aclose(self) -> None:
        await self._inner.aclose()


def check_token_shape(token: str) -> None:
    """ValueError (not naming the token) unless it looks like `<digits>:<letters>`."""
    if not TOKEN_SHAPE.fullmatch(token):
        raise ValueError("a Telegram bot token looks like 123456789:AAE..., from @BotFather")


# --- the caller ---------------------------------------------------------------------------


class BotCaller:
    """One HTTP client per bot token: calls a method, or downloads a file. Safe to share
    between tasks."""

    def __init__(
        self,
        token: str,
        *,
        api_url: str = API_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        pacing: Pacing = Pacing(),
        backoff: Backoff = REST_BACKOFF,
        rng: random.Random | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        check_token_shape(token)
        self._token = token
        # Never httpx's default (verify=True): it would call certifi.where(); see tls.
        inner = transport or httpx.AsyncHTTPTransport(
            verify=ssl_context or tls.ssl_context(), proxy=proxy_for(api_url)
        )
        self._client = httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            transport=_TokenTransport(inner, token),
            timeout=REQUEST_TIMEOUT,
            # The environment's proxy is in `inner` already: httpx's own proxy mounts
            # would route around `_TokenTransport` (and build a certifi context).
            trust_env=False,
        )
        self._pacer = _Pacer(pacing)
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._answers = ServerAnswers()
        self._proxy_said = ""  # the proxy's refusal, while it keeps answering so: said once
        # A revoked token's new one is a new configuration: a restart takes it.
        guess = "revoked in @BotFather (a new token takes a restart)?"
        self.token = TokenWatch(f"Telegram at {api_url}", "getMe", guess, log)

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- the request loop ------------------------------------------------------------------

    async def call(
        self,
        method: str,
        params: JSONObject | None = None,
        *,
        form: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes]] | None = None,
        chat_id: int | str | None = None,
        retry: bool = True,
        read_timeout: float = REQUEST_TIMEOUT,
        wait_for_token: bool = True,
        listening: bool = False,
    ) -> Any:
        """POST one method until Telegram gives a final answer; return its `result`.

        `chat_id` names the chat whose pacing the request counts against. With
        `retry=False` (the doctor) a transient failure raises instead, and so does a 401
        (else, while `token` watches, it waits for the token: `wait_for_token=False` is
        for the token's own check). `read_timeout` only tells a dead connection from a
        long poll that is still waiting; bound the call itself with a cancel scope.
        `listening`: nothing else would hear Telegram back (`backoff.listening_pace`).
        """
        pauses = self._pauses(listening)
        own_refusal = OwnRefusal()
        request: dict[str, Any] = (
            {"data": form, "files": files} if files is not None else {"json": params or {}}
        )
        timeout = httpx.Timeout(REQUEST_TIMEOUT, read=read_timeout)
        while True:
            await self._pacer.wait(method, chat_id)
            try:
                response = await self._client.post(
                    f"/bot{_PLACEHOLDER}/{method}", timeout=timeout, **request
                )
            except _TRANSIENT_ERRORS as exc:
                if isinstance(exc, httpx.ProxyError):
                    self._proxy_refused(method, self._scrub(str(exc)) or type(exc).__name__)
                else:
                    log.warning("%s failed: %s", method, type(exc).__name__)
                if not retry:
                    raise Unreachable(method, self._scrub(_cause(exc))) from None
                await pauses.pause()
                continue
            if response.status_code == 407:
                # An http:// api_url through a proxy: its refusal comes as an answer, not as
                # a failed tunnel. Telegram never read the call: an outage, not a refusal.
                self._proxy_refused(method, f"407 {response.reason_phrase}")
                if not retry:
                    raise Unreachable(method, "the proxy answered 407")
                await pauses.pause()
                continue
            self._proxy_passes()
            outcome, readable = self._outcome(method, response)
            if readable:  # a captive portal's page is no sign that Telegram is there
                self._heard(response.status_code)
            if not isinstance(outcome, Failure):
                log.debug("%s -> %d", method, response.status_code)
                return outcome
            code = outcome.error_code
            if code == 400 and _NOT_MODIFIED in outcome.description:
                log.debug("%s -> not modified", method)
                return True
            if code == 429:
                wait = _retry_after(outcome)
                if not retry:
                    raise TooManyRequests(method, self._scrub(outcome.description), wait or 0.0)
                if wait is None:
                    wait = pauses.next_delay()
                log.warning("%s -> 429, holding off %.1f s", method, wait)
                self._pacer.pause(method, chat_id, wait)
                continue
            if code == 401 and retry and wait_for_token and self.token.watching:
                log.debug("%s -> 401, waiting for a check of the token", method)  # `token` says why
                if not await own_refusal.after_check(self.token):
                    continue
            if not retry or not (code >= 500 or response.status_code >= 500):
                # The token's checks while it is refused: `token` said so once.
                said = code == 401 and self.token.refused
                log.log(logging.DEBUG if said else logging.INFO, "%s -> %d", method, code)
                if not readable:  # not Telegram's word: never taken for a refusal of its (403)
                    raise Unreadable(method, code, self._scrub(outcome.description))
                raise self._error(method, outcome)
            log.warning("%s -> %d, retrying", method, code)
            await pauses.pause()

    def _pauses(self, listens: bool = False) -> RetryPauses:
        return RetryPauses(listening_pace(self._backoff) if listens else self._backoff, self._rng, self._answers)

    def _heard(self, status: int) -> None:
        if server_is_up(status):
            self._answers.answered()  # Telegram is there: the other calls' retries need not wait

    def _outcome(self, method: str, response: httpx.Response) -> tuple[Any, bool]:
        """The result, or a Failure (a body we cannot read counts as one); and whether the
        body was the Bot API's."""
        try:
            return codec.parse_reply(response.json()), True
        except (ValueError, MalformedReply) as exc:
            # A proxy's page, a truncated body: judge by the HTTP status alone.
            reason = exc.reason if isinstance(exc, MalformedReply) else "not JSON"
            return Failure(response.status_code, f"unreadable answer ({reason})"), False

    def _proxy_refused(self, method: str, answer: str) -> None:
        """The proxy would not open the way to Telegram (`answer`: its status and reason):
        said once while it answers so (every try of every call would repeat it), and tried
        again as through an outage (its admin may let us through)."""
        if answer == self._proxy_said:
            log.debug("%s: the proxy refused again (%s)", method, answer)
            return
        self._proxy_said = answer
        log.error("Telegram cannot be reached through the proxy, which answered %s: should no_proxy "
                  "name the Bot API's host, or the proxy allow it (user and password in https_proxy)? "
                  "Tried again until it lets us through", answer)  # fmt: skip

    def _proxy_passes(self) -> None:
        if self._proxy_said:
            self._proxy_said = ""
            log.warning("the proxy lets us through to Telegram again")

    def _error(self, method: str, failure: Failure) -> BotApiError:
        kind = _ERRORS.get(failure.error_code, BotApiError)
        return kind(method, failure.error_code, self._scrub(failure.description))

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, _PLACEHOLDER)

    async def download_path(self, file_path: str, max_bytes: int) -> bytes:
        """GET /file/bot<token>/<file_path>, retried like a method."""
        path = f"/file/bot{_PLACEHOLDER}/{urllib.parse.quote(file_path, safe='/')}"
        pauses = self._pauses()
        own_refusal = OwnRefusal()
        while True:
            await self._pacer.wait("getFile", None)
            try:
                async with self._client.stream("GET", path) as response:
                    if response.status_code == 200:
                        return await _read_capped(response, max_bytes)
                    status = response.status_code
            except _TRANSIENT_ERRORS as exc:
                log.warning("file download failed: %s", type(exc).__name__)
            else:
                self._heard(status)
                if status == 401 and self.token.watching:
                    log.debug("file download -> 401, waiting for a check of the token")
                    if not await own_refusal.after_check(self.token):
                        continue
                if server_is_up(status):
                    log.info("file download -> %d", status)
                    raise _ERRORS.get(status, BotApiError)("file", status, "download refused")
                log.warning("file download -> %d, retrying", status)
            await pauses.pause()


# --- helpers (pure) ---------------------------------------------------------------------


def _retry_after(failure: Failure) -> float | None:
    seconds = failure.parameters.retry_after
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return float(min(seconds, _LONGEST_SERVER_WAIT))


def _cause(exc: BaseException) -> str:
    """The error's class name and its innermost cause's, e.g. "ConnectError: [Errno 111]
    Connection refused" (httpcore's words: no URL in them)."""
    inner: BaseException = exc
    while True:
        # A context raised `from None` is hidden on purpose (`_TokenTransport`).
        following = inner.__cause__ or (None if inner.__suppress_context__ else inner.__context__)
        if following is None:
            break
        inner = following
    return f"{type(exc).__name__}: {inner}" if str(inner) else type(exc).__name__


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > max_bytes:
            raise BadRequest("file", 400, f"file is larger than {max_bytes} bytes")
    return bytes(data)
