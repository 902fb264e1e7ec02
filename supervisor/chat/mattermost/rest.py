"""The Mattermost REST client: every HTTP call the supervisor makes to the chat server.

This module owns the HTTP session, the request budget and the retry loop. Each method
retries transient failures (connection errors, timeouts, 5xx, 429) forever, with backoff;
the caller bounds it with a cancel scope. Permanent refusals (other 4xx) raise `ChatError`.
A retry's pause ends early once the server answers again (`answers`: any answer to this
client, or the WebSocket's reconnect), so an answer does not wait long after an outage.
Once the link runs, a call refused with 401 waits until the token is taken again
(`token`): a token revoked while we run holds what we post, it does not drop it.

It must never:
- log the token or the Authorization header (log lines carry method, path, status only);
- send a request without taking a slot from the budget, so we never provoke the server's
  rate limiter (an unthrottled burst of edits is exactly what a streaming answer makes);
- take a `timeout=`: the per-request httpx timeout only detects dead connections.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import logging
import math
import random
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import trio

from supervisor.chat import ChatError, ChatUser, tls
from supervisor.chat.mattermost import codec, paging
from supervisor.chat.mattermost.choices import Reaction
from supervisor.chat.mattermost.codec import MalformedFrame, WirePost
from supervisor.chat.mattermost.token import TokenWatch
from supervisor.chat.proxy import described, proxy_for
from supervisor.chat.retry import RetryPauses, ServerAnswers, server_is_up
from supervisor.chat.token import OwnRefusal
from supervisor.core.backoff import REST_BACKOFF, Backoff, listening_pace
from supervisor.core.events import FileRef
from supervisor.core.ratelimit import RequestBudget, announced_limits
from supervisor.logs import one_line

log = logging.getLogger("supervisor.mattermost")
T = TypeVar("T")

# A dead TCP connection shows up as a timeout; 30 s is Mattermost's own write timeout.
_REQUEST_TIMEOUT = 30.0
# A bogus Retry-After must not stall the supervisor for a day; the caller's scope still
# bounds the whole call, this only bounds one wait.
_LONGEST_SERVER_WAIT = 300.0

# Requests in flight at once, and connections kept. More would not be faster (one event
# loop does the work, and 16 in flight at 20 ms each is 800 requests/s), and httpcore's
# pool does work quadratic in its connections for every request: with 50 sessions posting
# at once it had ~35, and its bookkeeping cost more than the exchanges. Requests beyond
# these wait in our limiter, at no cost.
_CONNECTIONS = 16

# What httpx's client would send besides the token.
_HEADERS = {
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
    "Connection": "keep-alive",
    "User-Agent": f"python-httpx/{httpx.__version__}",
}

# The server returns the first copy for a repeated pending_post_id only within 30 s of
# making it (FACTS §2). A create still unanswered after this long is first looked for, by
# a mark in its props (pending_post_id is not kept with the post), so that a lost answer
# and then an outage never make it twice.
PENDING_POST_SAFE_S = 25.0
CREATE_MARK = codec.CREATE_MARK
# Mattermost answers 403 when its permission check fails for any reason, a database error
# included (while it restarts, say): a write refused so is tried again for this long before
# the refusal counts (a post given up, a session failed). Not a read: the catch-up counts
# its refusals itself, and 30 s for each would hold up the front end's other places.
FORBIDDEN_PATIENCE_S = 30.0
# A gateway's answers that say its server's answer is lost, not that the call was refused.
_GATEWAY_LOST = frozenset({502, 504})
# How far before our first try the look goes back (by the server's clock, as we know it).
_CLOCK_SLACK_MS = 300_000

# Worth retrying: the request may not have reached the server, or the server failed.
# (UnsupportedProtocol, LocalProtocolError: our bug or bad config, so they propagate.)
# A proxy that cannot reach the server answers its CONNECT with an error: an outage too.
# A body that does not decode (bad gzip from a broken proxy) is an answer lost on the way.
_TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError, httpx.DecodingError)


def _is_transient(status: int) -> bool:
    # 500 includes api.post.deduplicate_create_post.pending: the first copy of a post is
    # still being created; retrying with the same pending_post_id returns it once done.
    return status >= 500 or status == 408


class MattermostRest:
    """One HTTP client per server and token. Safe to share between tasks."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        requests_per_second: float | None = None,
        backoff: Backoff = REST_BACKOFF,
        rng: random.Random | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.me: ChatUser | None = None  # set by get_me()
        # Requests go straight to httpx's transport (its connection pool over httpcore):
        # the client's per-request machinery (URL and header merging, auth and redirect
        # flows, cookies, hooks), none of which we use, cost about a third of each request's
        # CPU. The environment's proxy is honoured as the client did (trust_env). Never
        # httpx's default verify=True: it would call certifi.where(); see tls.
        kept = httpx.Limits(max_connections=_CONNECTIONS, max_keepalive_connections=_CONNECTIONS)
        proxy = proxy_for(self.base_url)
        self._proxy = described(proxy) if proxy else "the environment names"  # no credentials
        self._proxy_said = ""  # the proxy's refusal, while it keeps answering so: said once
        # How far the server's clock, which stamps posts (`create_at`), is ahead of ours,
        # from its `Date` header (`_observe_clock`); 0 until it answered.
        self.clock_ahead_ms = 0
        self._date_seen = ""
        if ssl_context is None:
            speaks_tls = any(url.startswith("https:") for url in (self.base_url, proxy or ""))
            ssl_context = tls.ssl_context() if speaks_tls else tls.plain_http_context()
        self._transport = transport or httpx.AsyncHTTPTransport(verify=ssl_context, limits=kept, proxy=proxy)
        self._exchanges = trio.CapacityLimiter(_CONNECTIONS)
        self._api = f"{self.base_url}/api/v4"
        self._headers = httpx.Headers({**_HEADERS, "Authorization": f"Bearer {token}"})
        self._extensions = {"timeout": httpx.Timeout(_REQUEST_TIMEOUT).as_dict()}
        # Follows the server's announced limits; `requests_per_second` only caps it.
        self._budget = RequestBudget(requests_per_second)
        self._backoff = backoff
        self._rng = rng or random.Random()
        self.answers = ServerAnswers()  # the WebSocket raises it too, on connecting again
        self.token = TokenWatch(self.base_url)

    async def aclose(self) -> None:
        await self._transport.aclose()

    # --- users and channels ------------------------------------------------------

    async def get_me(self) -> ChatUser:
        """Who the token is; a refused token raises (this is the token's check)."""
        response = await self._call("GET", "/users/me", wait_for_token=False, listening=True)
        self.me = _decode(response, codec.decode_user)
        return self.me

    async def user_by_username(self, username: str) -> ChatUser | None:
        try:
            response = await self._call("GET", f"/users/username/{quote(username, safe='')}")
        except ChatError as error:
            if error.status == 404:
                return None
            raise
        return _decode(response, codec.decode_user)

    async def users_by_ids(self, user_ids: list[str]) -> list[ChatUser]:
        return _decode(await self._call("POST", "/users/ids", json=user_ids), codec.decode_users)

    async def direct_channel(self, user_id: str) -> str:
        """The id of the direct-message channel between us and `user_id`."""
        me = await self._my_id()
        response = await self._call("POST", "/channels/direct", json=[me, user_id])
        return _decode(response, lambda body: codec.structure(body, codec.Channel)).id

    # --- posts ---------------------------------------------------------------------

    async def create_post(
        self,
        channel_id: str,
        message: str,
        *,
        root_id: str = "",
        file_ids: tuple[str, ...] = (),
        pending_post_id: str = "",
        props: dict[str, Any] | None = None,
    ) -> WirePost:
        # The retry loop may send this twice (the first answer lost on the way back); a
        # pending_post_id makes the server return the first copy instead of a duplicate,
        # and past its memory of it, `made_already` finds the first copy by its mark.
        pending_post_id = pending_post_id or secrets.token_hex(13)
        body = codec.NewPost(
            channel_id=channel_id,
            message=message,
            root_id=root_id,
            file_ids=list(file_ids),
            props={**(props or {}), CREATE_MARK: pending_post_id},
            pending_post_id=pending_post_id,
        )
        first_try, since_ms = trio.current_time(), self.server_now_ms() - _CLOCK_SLACK_MS

        async def made() -> httpx.Response | None:
            """The post, if the server made it: found by its mark."""
            me = await self._my_id()
            for post in await self.posts_since(channel_id, since_ms):
                if post.props.get(CREATE_MARK) == pending_post_id and post.user_id == me:
                    log.info("POST /posts: made before its answer was lost; not sent again")
                    return await self._call("GET", f"/posts/{quote(post.id, safe='')}")
            return None

        async def made_already(unanswered: bool) -> httpx.Response | None:
            # The server still knows the pending_post_id: a resend is safe, unless the last
            # try may have reached a server that has since lost it (it crashed after
            # making the post, or another node answers now).
            if trio.current_time() - first_try < PENDING_POST_SAFE_S and not unanswered:
                return None
            return await made()

        response = await self._call("POST", "/posts", json=codec.unstructure(body), before_resend=made_already)
        try:
            return _decode(response, codec.decode_post)
        except ChatError as unread:
            # Taken, but the answer is not the post (a proxy's page): the post, if made.
            found = await made()
            if found is None:  # not made: it may be sent again
                raise ChatError(502, unread.error_id, f"{unread.message}; no post made") from None
            return _decode(found, codec.decode_post)

    async def edit_post(self, post_id: str, message: str) -> WirePost:
        response = await self._call("PUT", f"/posts/{post_id}/patch", json={"message": message})
        return _decode(response, codec.decode_post)

    async def add_reaction(self, post_id: str, emoji_name: str) -> None:
        body = {"user_id": await self._my_id(), "post_id": post_id, "emoji_name": emoji_name}
        await self._call("POST", "/reactions", json=body)

    async def reactions(self, post_id: str) -> list[Reaction]:
        response = await self._call("GET", f"/posts/{quote(post_id, safe='')}/reactions")
        return _decode(response, codec.decode_reactions)

    async def posts_since(self, channel_id: str, since_ms: int) -> list[WirePost]:
        """Every post created after `since_ms`, and posts changed after it, oldest first
        (`paging.posts_since`)."""
        return await paging.posts_since(functools.partial(self._post_list, channel_id), since_ms)

    async def posts_after(self, channel_id: str, post_id: str) -> list[WirePost]:
        """Every post created after `post_id` in the channel, oldest first, all pages."""
        return await paging.posts_after(functools.partial(self._post_list, channel_id), post_id)

    async def typing(self, channel_id: str, parent_id: str = "") -> None:
        body = {"channel_id": channel_id, "parent_id": parent_id}
        await self._call("POST", "/users/me/typing", json=body)

    # --- files ---------------------------------------------------------------------

    async def file_info(self, file_id: str) -> FileRef:
        return _decode(await self._call("GET", f"/files/{file_id}/info"), codec.decode_file_info)

    async def download_file(self, file_id: str) -> bytes:
        return (await self._call("GET", f"/files/{file_id}")).content

    async def upload_file(self, channel_id: str, name: str, data: bytes) -> str:
        """Upload one file into `channel_id`; return its file id for `create_post`."""
        response = await self._call(
            "POST", "/files", data={"channel_id": channel_id}, files={"files": (name, data)}
        )
        result = _decode(response, lambda body: codec.structure(body, codec.UploadResult))
        if not result.file_infos:
            raise ChatError(response.status_code, "malformed_response", "no file_infos")
        return result.file_infos[0].id

    # --- health --------------------------------------------------------------------

    async def ping(self) -> str:
        """One unretried GET /system/ping, for the doctor. Returns the server's status.

        Raises `ChatError` on any failure; status 0 means the server was not reachable.
        """
        response = await self._call("GET", "/system/ping", retry=False)
        status = _decode(
            response, lambda body: body.get("status") if isinstance(body, dict) else None
        )
        return status if isinstance(status, str) else ""

    # --- the request loop ------------------------------------------------------------

    async def _my_id(self) -> str:
        return (self.me or await self.get_me()).id

    async def _post_list(self, channel_id: str, params: dict[str, Any]) -> codec.PostList:
        response = await self._call("GET", f"/channels/{channel_id}/posts", params=params)
        return _decode(response, codec.decode_post_list)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        retry: bool = True,
        wait_for_token: bool = True,
        listening: bool = False,
        before_resend: Callable[[bool], Awaitable[httpx.Response | None]] | None = None,
        **request: Any,
    ) -> httpx.Response:
        """Send until the server gives a final answer. 2xx: returned; 4xx: ChatError,
        but a 401 waits for the token to be taken again once `token` watches.
        `before_resend` may find that a try whose answer never came took effect: its
        answer is then the call's (told whether the last try went unanswered: no answer,
        or a gateway's that its server's is lost). `listening`: nothing else would hear the server back
        (`backoff.listening_pace`)."""
        backoff = listening_pace(self._backoff) if listening else self._backoff
        pauses, tries = RetryPauses(backoff, self._rng, self.answers), 0
        own_refusal = OwnRefusal()
        unanswered = False  # the last try may have taken effect, its answer lost
        forbidden_since: float | None = None  # this call's first 403
        while True:
            if tries and before_resend is not None and (found := await before_resend(unanswered)) is not None:
                return found
            tries += 1
            await self._wait_for_budget()
            try:
                unanswered = True
                response = await self._send(method, path, request)
            except _TRANSIENT_ERRORS as exc:
                if isinstance(exc, httpx.ProxyError):
                    refusal = one_line(exc, limit=120).removeprefix("ProxyError: ")  # its status and reason
                    answer = self._proxy_refused(method, path, refusal, retry=retry)
                else:
                    log.warning("%s %s failed: %s", method, path, type(exc).__name__)
                    answer = type(exc).__name__
                if not retry:
                    raise ChatError(0, "unreachable", answer) from None
                await pauses.pause()
                continue
            status = response.status_code
            unanswered = status in _GATEWAY_LOST
            if status == 407:
                # A plain-http server through a proxy: the proxy's refusal comes as an answer,
                # not as a failed tunnel. The server never read the call: not a 4xx of its.
                answer = self._proxy_refused(method, path, f"407 {response.reason_phrase}", retry=retry)
                if not retry:
                    raise ChatError(0, "unreachable", answer)
                await pauses.pause()
                continue
            if self._proxy_said:
                self._proxy_said = ""
                log.warning("Mattermost at %s: the proxy %s lets us through again", self.base_url, self._proxy)
            self._observe_budget_headers(response)
            self._observe_clock(response)
            if server_is_up(status):
                self.answers.answered()  # it is up: the others' retries need not wait
            if status < 400:
                log.debug("%s %s -> %d", method, path, status)
                return response
            if status == 401 and retry and wait_for_token and self.token.watching:
                log.debug("%s %s -> 401, waiting for a check of the token", method, path)  # `token` says why
                # The call's own refusal (a path a proxy guards, say) fails as any 4xx.
                if not await own_refusal.after_check(self.token):
                    continue
            if status == 403 and retry and method != "GET":  # (a read's callers count its refusals)
                first = forbidden_since is None
                forbidden_since = trio.current_time() if forbidden_since is None else forbidden_since
                if trio.current_time() - forbidden_since < FORBIDDEN_PATIENCE_S:
                    log.log(logging.WARNING if first else logging.DEBUG, "%s %s -> 403, tried again for up to %g s "
                            "(a server restarting, or whose database falters, refuses for a moment)",
                            method, path, FORBIDDEN_PATIENCE_S)  # fmt: skip
                    await pauses.pause()
                    continue
            if not retry or not (status == 429 or _is_transient(status)):
                # The token's checks while it is refused: `token` said so once.
                said = status == 401 and self.token.refused
                log.log(logging.DEBUG if said else logging.INFO, "%s %s -> %d", method, path, status)
                raise _chat_error(response)
            if status == 429:
                wait = _server_wait(response)
                if wait is None:
                    wait = pauses.next_delay()
                log.warning("%s %s -> 429, holding off %.1f s", method, path, wait)
                self._budget.pause(trio.current_time(), wait)
                continue
            log.warning("%s %s -> %d, retrying", method, path, status)
            await pauses.pause()

    def _proxy_refused(self, method: str, path: str, answer: str, *, retry: bool) -> str:
        """The proxy would not open the way to the server (`answer`: its status and reason):
        said once, with what to check (every try of every call would repeat it); tried
        again all the same, as through an outage (it may be let through once its admin
        allows it). Returns the proxy's answer, in a few words."""
        if answer == self._proxy_said:
            log.debug("%s %s: the proxy refused again (%s)", method, path, answer)
            return f"the proxy answered {answer}"
        self._proxy_said = answer
        level, why = logging.ERROR, "it will not connect us there: should no_proxy name the server, or the proxy allow it?"
        if answer.startswith("407"):
            variable = "http_proxy" if self.base_url.startswith("http:") else "https_proxy"
            why = f"the user and password in the proxy's URL ({variable}, all_proxy) are missing or wrong"
        elif answer.startswith("5"):  # an outage behind the proxy, not our configuration
            level, why = logging.WARNING, "it cannot reach the server (is it down, or mattermost.url wrong?)"
        then = "; tried again until it lets us through" if retry else ""
        log.log(level, "Mattermost at %s cannot be reached through the proxy %s, which answered %s: %s%s",
                self.base_url, self._proxy, answer, why, then)  # fmt: skip
        return f"the proxy answered {answer}"

    async def _send(self, method: str, path: str, request: dict[str, Any]) -> httpx.Response:
        """One exchange, the whole body read (what `AsyncClient.request` does for us)."""
        sent = httpx.Request(
            method, self._api + path, headers=self._headers, extensions=self._extensions, **request
        )
        async with self._exchanges:
            response = await self._transport.handle_async_request(sent)
            response.request = sent
            try:
                await response.aread()
            finally:
                await response.aclose()
        return response

    async def _wait_for_budget(self) -> None:
        while True:
            await trio.sleep(self._budget.take(trio.current_time()))
            # A pause that began while we waited for our slot voids the slot: take a
            # new one after the pause, so the queue behind it does not start all at once.
            if self._budget.held(trio.current_time()) <= 0:
                return

    def request_room(self) -> float:
        """Seconds until a deferrable request (an intermediate edit) may go: 0 while the
        budget is comfortably full. Reserves nothing."""
        return self._budget.room(trio.current_time())

    def _observe_budget_headers(self, response: httpx.Response) -> None:
        # Only sent when the server's rate limiter is on: adopt its limits, and never count
        # on more than it says is left (a 429's own headers are honoured by the caller).
        headers = response.headers
        announced = announced_limits(
            headers.get("X-RateLimit-Limit"), headers.get("X-RateLimit-Remaining"), headers.get("X-RateLimit-Reset")
        )
        if announced is not None and response.status_code != 429:
            self._budget.observe(trio.current_time(), announced)

    def _observe_clock(self, response: httpx.Response) -> None:
        # Its `Date` changes once a second: read only then.
        date = response.headers.get("Date")
        if date and date != self._date_seen:
            self._date_seen = date
            with contextlib.suppress(TypeError, ValueError, OverflowError):
                server_ms = email.utils.parsedate_to_datetime(date).timestamp() * 1000
                self.clock_ahead_ms = round(server_ms - time.time() * 1000)

    def server_now_ms(self) -> int:
        """The server's time now, as it stamps posts (to a second or so)."""
        return int(time.time() * 1000) + self.clock_ahead_ms


# --- helpers (pure) ------------------------------------------------------------------


def _seconds(value: str | None) -> float | None:
    """A header holding a number of seconds; None when missing or unusable."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # e.g. Retry-After as an HTTP date, which Mattermost does not send
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, _LONGEST_SERVER_WAIT)


def _server_wait(response: httpx.Response) -> float | None:
    """How long a 429 asks us to wait: Retry-After, else X-RateLimit-Reset (both seconds)."""
    for header in ("Retry-After", "X-RateLimit-Reset"):
        seconds = _seconds(response.headers.get(header))
        if seconds is not None:
            return seconds
    return None


def _chat_error(response: httpx.Response) -> ChatError:
    try:
        error = codec.loads(response.content, codec.AppError)
    except MalformedFrame:
        # e.g. the rate limiter's text/plain "limit exceeded", or a proxy's HTML page
        return ChatError(response.status_code, "", response.text[:200].strip())
    return ChatError(response.status_code, error.id, error.message)


def _decode(response: httpx.Response, decode: Callable[[Any], T]) -> T:
    """A success body, decoded; one we cannot read is a `ChatError` with its 2xx status
    (the call may have taken effect: `create_post` looks for the post it made)."""
    try:
        return decode(response.json())
    except ValueError as exc:  # not JSON (JSONDecodeError, UnicodeDecodeError)
        reason = f"not JSON: {type(exc).__name__}"
    except MalformedFrame as exc:
        reason = exc.reason
    raise ChatError(response.status_code, "malformed_response", reason)
