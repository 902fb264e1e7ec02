"""A fake Mattermost server: real HTTP/1.1 + WebSocket on 127.0.0.1, API v4 shapes.

End-to-end tests and benchmarks run the supervisor (in-process or as a child process)
against it over loopback. It owns the listening socket, the nursery of connections and the
test hooks below; data rules live in `mattermost_store`, REST in `mattermost_rest`, the
WebSocket hub in `mattermost_ws`, faults and counters in `mattermost_faults`. It must
never reach beyond 127.0.0.1, and tests must never need to sleep to see its effects:
`wait_until` wakes on every change.

Start and identities:
    server = FakeMattermost(max_file_size=..., ws_ping_interval=60.0, ws_pong_wait=100.0,
                            ws_auth_timeout=5.0, bot_username="claude-bot")
    url = await nursery.start(server.serve)     # binds 127.0.0.1:0; sets server.url
    server.url, server.ws_url                   # "http://127.0.0.1:PORT", "ws://.../api/v4/websocket"
    server.bot, server.bot_token                # Account(id, username, token, is_bot=True)
    server.add_user("alice") -> Account         # with its own token
    server.user("alice") -> Account
    server.dm_channel(user_a_id, user_b_id) -> channel dict (get or create)
    server.dm_with_bot("alice") -> channel dict
    server.add_channel("town-square", ["alice", "bob"], kind="O") -> channel dict

Acting as a person (each change is broadcast over the WebSocket, as the real server does):
    await server.user_post("alice", "text", root_id="", file_ids=(), props=None) -> post
    await server.user_post_in(channel_id, "alice", "text", root_id=..., ...) -> post
    await server.user_edit("alice", post_id, "new text") -> post
    await server.user_delete("alice", post_id)
    await server.user_react("alice", post_id, "+1") -> reaction
    await server.user_unreact("alice", post_id, "+1")
    await server.user_typing("alice", channel_id, parent_id="")
    server.upload_as("alice", "name.txt", b"...", channel_id=None) -> file id (default: DM with bot)

Faults:
    server.drop_sockets()                       # close every WebSocket abruptly (no close frame)
    server.refuse_websockets(True/False)        # upgrades get 503 and the connection closes
    server.forget_connections()                 # next resume of any connection id gets a new hello
    server.fail_requests(mode, path_prefix="", method=None, count=None)
        mode: None (back to normal), "refuse" (hang up unanswered, request not handled),
        "drop_response" (handled, then hang up unanswered), or an HTTP status (AppError body).
        Applies to REST requests only (WebSocket upgrades: refuse_websockets).
    server.rate_limit(per_second=10, burst=100) # GCRA per remote address; rate_limit(None) = off
    server.latency(seconds, after=False)        # delay each REST request before (or after) handling
    server.set_clock(ahead_ms=-600_000)          # its clock (create_at, `Date`) off the machine's

Assertions:
    server.stats.requests[(method, route)], server.stats.count(method, route),
    server.stats.rate_limited, .refused, .connections, .ws_upgrades, .ws_resumed,
    server.stats.log (RequestRecords: method, path, route, query, headers, json, status, ...),
    server.stats.records(method=None, route=None)
    server.posts_in_channel(channel_id, include_deleted=True) -> [post] in create order
    server.thread(root_id, include_deleted=False) -> [root, replies...] in create order
    server.posts_by(user_id_or_username) -> [post]
    server.reactions_on(post_id) -> [reaction]
    server.typing_events -> [(user_id, channel_id, parent_id, trio.current_time())]
    server.edits -> [(post_id, trio.current_time())]   # every successful patch
    server.websockets(user_id) -> number of open, authenticated sockets of that user
    await server.wait_until(predicate)             # re-checked after every change
    await server.wait_for_websocket(user_id=None, count=1)   # default: the bot

Fidelity notes (what a client sees, as on a real server): a reply bumps its root's
update_at, and so does a reaction; every patch leaves an edit-history row (a deleted post
whose original_id is the edited post) that `?since=` returns; pending_post_id is echoed
only by the create answer and the `posted` event; humans have no `is_bot` key; unknown
emoji get 404, other users' posts 403 on edit/delete. Deviations: PostList always carries
`has_next`; a pending_post_id repeat never gets the real server's in-flight 500.
Over 1000 changes, `?since=` answers with 1000 of them as the real unordered LIMIT may:
by default an arbitrary 1000 (`server.store.since_pick = "oldest"` / `"newest"` to choose).
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from tests.fakes.mattermost_faults import (
    FaultMode,
    FaultRule,
    RateLimiter,
    RequestRecord,
    Stats,
    redact,
)
from tests.fakes.mattermost_http import (
    Request,
    Response,
    WebSocketHandler,
    serve_connection,
)
from tests.fakes.mattermost_rest import (
    WEBSOCKET_ROUTE,
    RestApi,
    error_response,
    injected_error,
    match_route,
    rate_limited_response,
    too_large_error,
)
from tests.fakes.mattermost_shapes import (
    DEFAULT_MAX_FILE_SIZE,
    JSON,
    SERVER_VERSION_STRING,
    ApiError,
    Broadcast,
    new_id,
)
from tests.fakes.mattermost_store import Store
from tests.fakes.mattermost_ws import Hub, WebSocketSession

__all__ = ["Account", "FakeMattermost", "RequestRecord"]


@attrs.frozen
class Account:
    id: str
    username: str
    token: str
    is_bot: bool = False


class FakeMattermost:
    """The server and its test hooks (see the module docstring)."""

    def __init__(
        self,
        *,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        ws_ping_interval: float = 60.0,
        ws_pong_wait: float = 100.0,
        ws_auth_timeout: float = 5.0,
        bot_username: str = "claude-bot",
    ) -> None:
        self.store = Store(monotonic=trio.current_time)
        self.hub = Hub()
        self.stats = Stats()
        self.rest = RestApi(self.store, self._publish, max_file_size)
        self.max_body_size = max_file_size + (1 << 20)  # room for multipart framing
        self.url = ""
        self._ws_settings = (ws_auth_timeout, ws_ping_interval, ws_pong_wait)
        self._faults: list[FaultRule] = []
        self._limiter: RateLimiter | None = None
        self._latency = (0.0, False)
        self._refuse_ws: bool | int = False  # True: 503, as while restarting; or that status
        self._sessions: set[WebSocketSession] = set()
        self._change = trio.Event()
        self._accounts: dict[str, Account] = {}
        self._revoked: dict[str, str] = {}  # token -> user id, while `revoke_token` holds
        self.bot = self.add_user(bot_username, is_bot=True)
        self.bot_token = self.bot.token

    # -- serving -------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on 127.0.0.1:0 and serve until cancelled; `started()` with the URL."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        task_status.started(self.url)
        await trio.serve_listeners(self._serve_stream, listeners)

    async def _serve_stream(self, stream: trio.SocketStream) -> None:
        self.stats.connections += 1
        await serve_connection(stream, self)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + WEBSOCKET_ROUTE

    # -- HttpApp -------------------------------------------------------------------------

    async def respond(self, request: Request) -> Response | None:
        arrived = trio.current_time()
        request_id = new_id()
        matched = match_route(request.method, request.path)
        route = matched[0].template if matched else ""
        self.stats.requests[(request.method, route)] += 1
        rule = self._take_fault(request)
        mode = rule.mode if rule is not None else None
        if mode == "refuse":
            self.stats.refused += 1
            self._record(arrived, request, route, None)
            return None
        if isinstance(mode, int):
            response = injected_error(mode, request_id)
        else:
            response = await self._limited_or_handled(request, request_id)
        date = email.utils.formatdate(self.store.clock.wall_ms() / 1000, usegmt=True)  # as Go's net/http
        response = response.with_headers(
            (("X-Request-Id", request_id), ("X-Version-Id", SERVER_VERSION_STRING), ("Date", date))
        )
        delay, after = self._latency
        if delay and after:
            await trio.sleep(delay)
        self._record(arrived, request, route, response)
        self._changed()
        if mode == "drop_response":
            self.stats.refused += 1
            return None
        if mode == "garble_response":
            return Response(200, b"<html>Please sign in to the proxy</html>", "text/html")
        return response

    async def _limited_or_handled(self, request: Request, request_id: str) -> Response:
        limit_headers: tuple[tuple[str, str], ...] = ()
        if self._limiter is not None:
            decision = self._limiter.check(request.remote, trio.current_time())
            limit_headers = decision.headers
            if decision.limited:
                self.stats.rate_limited += 1
                return rate_limited_response().with_headers(limit_headers)
        delay, after = self._latency
        if delay and not after:
            await trio.sleep(delay)
        return self.rest.dispatch(request, request_id).with_headers(limit_headers)

    async def upgrade(self, request: Request) -> Response | WebSocketHandler:
        arrived = trio.current_time()
        request_id = new_id()
        route = WEBSOCKET_ROUTE if request.path.rstrip("/") == WEBSOCKET_ROUTE else ""
        self.stats.ws_upgrades += 1
        self.stats.requests[("GET", route)] += 1
        refusal = self._refuse_upgrade(request, request_id)
        if refusal is not None:
            refusal = refusal.with_headers((("X-Request-Id", request_id),))
            self._record(arrived, request, route, refusal)
            self._changed()  # a test may wait for a number of refused attempts
            return refusal
        self._record(arrived, request, route, Response(101))
        user_id = self.rest.session_user(request)
        connection_id = request.arg("connection_id") or ""
        sequence = _int_or_none(request.arg("sequence_number"))

        async def serve_socket(stream: trio.SocketStream, ws: Any) -> None:
            auth_timeout, ping_interval, pong_wait = self._ws_settings
            session = WebSocketSession(
                stream,
                ws,
                self,
                auth_timeout=auth_timeout,
                ping_interval=ping_interval,
                pong_wait=pong_wait,
            )
            self._sessions.add(session)
            try:
                await session.run(user_id, connection_id, sequence)
            finally:
                self._sessions.discard(session)

        return serve_socket

    def _refuse_upgrade(self, request: Request, request_id: str) -> Response | None:
        if request.path.rstrip("/") != WEBSOCKET_ROUTE:
            return error_response(
                ApiError(404, "api.context.404.app_error", "Sorry, we could not find the page."),
                request_id,
            )
        if self._refuse_ws:
            return injected_error(503 if self._refuse_ws is True else self._refuse_ws, request_id)
        if self._limiter is not None:
            decision = self._limiter.check(request.remote, trio.current_time())
            if decision.limited:
                self.stats.rate_limited += 1
                return rate_limited_response().with_headers(decision.headers)
        return None

    def too_large(self, request: Request) -> Response:
        """A body over max_body_size: 413 before reading it; the connection then closes."""
        request_id = new_id()
        length = int(request.header("content-length") or 0)
        error = too_large_error(length, self.rest.max_file_size)
        response = error_response(error, request_id).with_headers((("X-Request-Id", request_id),))
        matched = match_route(request.method, request.path)
        self._record(trio.current_time(), request, matched[0].template if matched else "", response)
        return response

    def _take_fault(self, request: Request) -> FaultRule | None:
        for rule in self._faults:
            if rule.matches(request.method, request.path):
                if rule.consume():
                    self._faults.remove(rule)
                return rule
        return None

    def _record(
        self, arrived: float, request: Request, route: str, response: Response | None
    ) -> None:
        self.stats.log.append(
            RequestRecord(
                time=arrived,
                method=request.method,
                path=request.path,
                route=route,
                query=request.query,
                headers=redact(request.headers),
                content_type=request.content_type,
                body=self.stats.keepable(request.body, request.content_type),
                body_size=len(request.body),
                status=response.status if response else 0,
                response_content_type=response.content_type if response else "",
                response_body=self.stats.keepable(response.body, response.content_type)
                if response
                else b"",
                response_headers=response.headers if response else (),
            )
        )

    # -- WsBackend -----------------------------------------------------------------------

    def user_for_token(self, token: str) -> str | None:
        return self.store.tokens.get(token)

    def publish_typing(self, user_id: str, channel_id: str, parent_id: str) -> None:
        self._publish(self.store.typing(user_id, channel_id, parent_id))

    def statuses(self, user_ids: list[str] | None) -> dict[str, str]:
        ids = self.store.users if user_ids is None else [str(u) for u in user_ids]
        return {uid: "online" if self.hub.active_sockets(uid) else "offline" for uid in ids}

    def socket_attached(self, session: WebSocketSession, resumed: bool) -> None:
        if resumed:
            self.stats.ws_resumed += 1
        self._changed()

    def socket_detached(self, session: WebSocketSession) -> None:
        self._changed()

    def _publish(self, broadcast: Broadcast) -> None:
        self.hub.publish(broadcast)
        self._changed()

    def _changed(self) -> None:
        self._change.set()
        self._change = trio.Event()

    # -- identities and channels ---------------------------------------------------------

    def add_user(self, username: str, *, is_bot: bool = False) -> Account:
        user, token = self.store.add_user(username, is_bot=is_bot)
        account = Account(user["id"], user["username"], token, is_bot)
        self._accounts[account.username] = account
        return account

    def user(self, username: str) -> Account:
        return self._accounts[username.lower()]

    def dm_channel(self, user_a_id: str, user_b_id: str) -> JSON:
        return dict(self.store.direct_channel(user_a_id, user_b_id))

    def dm_with_bot(self, username: str) -> JSON:
        return self.dm_channel(self.user(username).id, self.bot.id)

    def add_channel(self, name: str, usernames: Sequence[str], *, kind: str = "O") -> JSON:
        members = [self.user(n).id for n in usernames]
        return dict(self.store.add_channel(name, members, kind=kind))

    # -- acting as a person --------------------------------------------------------------

    async def user_post(
        self,
        username: str,
        text: str,
        *,
        root_id: str = "",
        file_ids: Sequence[str] = (),
        props: JSON | None = None,
    ) -> JSON:
        """Post as `username` in their DM with the bot; broadcast `posted`."""
        channel_id = self.dm_with_bot(username)["id"]
        return await self.user_post_in(
            channel_id, username, text, root_id=root_id, file_ids=file_ids, props=props
        )

    async def user_post_in(
        self,
        channel_id: str,
        username: str,
        text: str,
        *,
        root_id: str = "",
        file_ids: Sequence[str] = (),
        props: JSON | None = None,
    ) -> JSON:
        user_id = self.user(username).id
        post, broadcasts = self.store.create_post(
            user_id,
            channel_id,
            text,
            root_id=root_id,
            file_ids=file_ids,
            props=props,
            pending_post_id=f"{user_id}:{new_id()}",
        )  # as the web app does
        await self._announce(broadcasts)
        return post

    async def user_edit(self, username: str, post_id: str, text: str) -> JSON:
        post, broadcasts = self.store.patch_post(self.user(username).id, post_id, {"message": text})
        await self._announce(broadcasts)
        return post

    async def user_delete(self, username: str, post_id: str) -> None:
        await self._announce(self.store.delete_post(self.user(username).id, post_id))

    async def user_react(self, username: str, post_id: str, emoji: str) -> JSON:
        reaction, broadcasts = self.store.save_reaction(self.user(username).id, post_id, emoji)
        await self._announce(broadcasts)
        return reaction

    async def user_unreact(self, username: str, post_id: str, emoji: str) -> None:
        await self._announce(self.store.delete_reaction(self.user(username).id, post_id, emoji))

    async def user_typing(self, username: str, channel_id: str, parent_id: str = "") -> None:
        await self._announce([self.store.typing(self.user(username).id, channel_id, parent_id)])

    async def _announce(self, broadcasts: list[Broadcast]) -> None:
        for broadcast in broadcasts:
            self._publish(broadcast)
        self._changed()
        await trio.lowlevel.checkpoint()

    def upload_as(
        self, username: str, name: str, data: bytes, channel_id: str | None = None
    ) -> str:
        """Upload a file as `username` (not yet attached to a post); its file id."""
        channel_id = channel_id or self.dm_with_bot(username)["id"]
        return str(self.store.save_file(self.user(username).id, channel_id, name, data)["id"])

    # -- faults --------------------------------------------------------------------------

    def drop_sockets(self) -> None:
        for session in list(self._sessions):
            session.abort()

    def set_clock(self, *, ahead_ms: int) -> None:
        """The server's clock, which stamps posts and its `Date` header, is this far ahead
        of the machine's (< 0: behind), as on a network without time sync."""
        self.store.clock.ahead_ms = ahead_ms
        self.store.clock.last = 0  # stamps go back with it: a clock set back is the point

    def refuse_websockets(self, refuse: bool | int = True) -> None:
        """Refuse every WebSocket handshake: with 503, or the status given (a proxy's 401)."""
        self._refuse_ws = refuse

    def cut_off(self, *, forget: bool = True) -> None:
        """As while the server restarts behind its proxy: every WebSocket is dropped and new
        ones refused until `refuse_websockets(False)`; with `forget`, a new connection gets
        no replay, so only a catch-up finds what came meanwhile."""
        self.refuse_websockets(True)
        if forget:
            self.forget_connections()
        self.drop_sockets()

    def forget_connections(self) -> None:
        self.hub.forget()

    def revoke_token(self, token: str = "") -> None:
        """As an administrator revoking an access token (the bot's by default) or
        deactivating its account: its REST calls get 401, its WebSockets are dropped, and
        new ones are let in but never greeted (closed after `ws_auth_timeout`)."""
        token = token or self.bot_token
        user_id = self.store.tokens.pop(token)
        self._revoked[token] = user_id
        for session in list(self._sessions):
            if session.conn is not None and session.conn.user_id == user_id:
                session.abort()

    def accept_token(self, token: str = "") -> None:
        """Undo `revoke_token` (a token given back, the account reactivated)."""
        token = token or self.bot_token
        self.store.tokens[token] = self._revoked.pop(token)

    def fail_requests(
        self,
        mode: FaultMode | None,
        *,
        path_prefix: str = "",
        method: str | None = None,
        count: int | None = None,
    ) -> None:
        """Fail matching REST requests (`count` of them, or until called with None)."""
        if mode is None:
            self._faults.clear()
            return
        self._faults.append(FaultRule(mode, path_prefix, method, count))

    def rate_limit(self, per_second: float | None = 10.0, burst: int = 100) -> None:
        self._limiter = None if per_second is None else RateLimiter(per_second, burst)

    def latency(self, seconds: float, *, after: bool = False) -> None:
        self._latency = (seconds, after)

    # -- assertions ----------------------------------------------------------------------

    def posts_in_channel(self, channel_id: str, *, include_deleted: bool = True) -> list[JSON]:
        posts = (self.store.posts[p] for p in self.store.channel_posts[channel_id])
        return [self.store.render(p) for p in posts if include_deleted or not p["delete_at"]]

    def thread(self, root_id: str, *, include_deleted: bool = False) -> list[JSON]:
        ids = [root_id, *self.store.replies.get(root_id, ())]
        posts = (self.store.posts[p] for p in ids)
        return [self.store.render(p) for p in posts if include_deleted or not p["delete_at"]]

    def posts_by(self, user: str) -> list[JSON]:
        user_id = self._accounts[user.lower()].id if user.lower() in self._accounts else user
        return [
            self.store.render(p)
            for p in self.store.posts.values()
            if p["user_id"] == user_id and not p["original_id"]
        ]

    def reactions_on(self, post_id: str) -> list[JSON]:
        return self.store.reactions_for(post_id)

    @property
    def typing_events(self) -> list[tuple[str, str, str, float]]:
        return list(self.store.typing_events)

    @property
    def edits(self) -> list[tuple[str, float]]:
        return list(self.store.edits)

    def websockets(self, user_id: str) -> int:
        return self.hub.active_sockets(user_id)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds; it is re-checked after every change."""
        while True:
            change = self._change
            if predicate():
                return
            await change.wait()

    async def wait_for_websocket(self, user_id: str | None = None, count: int = 1) -> None:
        user_id = user_id or self.bot.id
        await self.wait_until(lambda: self.hub.active_sockets(user_id) >= count)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
