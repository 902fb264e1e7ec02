"""A fake Telegram Bot API server: real HTTP/1.1 on 127.0.0.1, Telegram's semantics.

Tests run our client (or the whole supervisor) against it over loopback. It owns the
listening socket, the bot's state (chats, messages, topics, drafts, files, updates) and
the test hooks below. HTTP framing is the generic h11 server of `mattermost_http`;
Telegram's HTML rules live in `telegram_html`. It never reaches beyond 127.0.0.1, and
tests never need to sleep to see its effects: `wait_until` wakes on every change.

Start:
    fake = FakeBotApi(token=TOKEN, topics=True, drafts=True)
    await nursery.start(fake.serve)            # binds 127.0.0.1:0; sets fake.url
    async with running(topics=False) as fake:  # the same, for one block
    BotApi(TOKEN, api_url=fake.url)

Acting as a person (each makes an update; sync, no I/O):
    fake.add_user(user_id, first_name="Alice") -> user dict (a private chat with the bot)
    fake.user_sends(user_id, text, thread_id=None, reply_to=None, document=None,
                    photo=None, edited_id=None, album="") -> message dict
        document=(name, bytes); photo=bytes; edited_id: an edited_message of that message;
        album: its media_group_id (each part of an album is a message of its own)
    fake.user_presses(user_id, message_id, data) -> callback query id
    fake.user_deletes(user_id, message_id)   # gone from the chat; Telegram tells a bot nothing
    fake.user_creates_topic(user_id, name) -> message_thread_id (a forum_topic_created message)
    fake.user_sends_in_group(user_id, group_id, text) -> message dict (in a supergroup;
        the bot's messages there: fake.bot_messages(group_id))
    fake.stop_draft(user_id, draft_id, thread_id=None)   # 10.3 stopped_message_generation
    fake.user_stops_draft(user_id, thread_id=None) -> update id: Stop pressed on the draft
        shown there now (it must have been sent with can_stop); the draft goes away
    fake.add_update(payload_dict) -> update_id            # any kind, e.g. {"poll": {...}}
        a payload's own "update_id" (None: none at all) is what getUpdates shows in place
        of the update's id, as a garbling proxy would: the update stays until an offset
        passes its real id (the one returned), as every update does

Switches:
    fake.topics, fake.users_may_create_topics, fake.drafts (False: sendMessageDraft -> 404,
    as an older server), fake.set_webhook(url)
    fake.rate_limit(per_second=1.0, burst=3, methods=MESSAGE_METHODS, grace_s=0.05)
        per chat, with Telegram's 429 and parameters.retry_after; rate_limit(None) = off
    fake.fail(method, status, description="", count=1, retry_after=None, hang_up=False,
              after=0, unreadable=False, page="")
        the next `count` calls of `method` get that error (or no answer at all; or, with
        `unreadable`, an ok answer whose result is not the method's shape; or, with `page`,
        that HTML with `status`, as a captive portal answers), once `after` calls of it
        went through untouched
    fake.clear_faults()
    fake.revoke_token() / fake.accept_token(): every call (and download) with the token is
        answered 401 "Unauthorized" meanwhile, as Telegram does for a revoked token (the
        calls are in `calls`, with status 401)

Assertions:
    fake.calls: [Call(seq, at, method, params, status, reply)]; fake.calls_of(method)
    fake.arrived: [(seq, method)] as requests arrive (a long poll is in `calls` once answered)
    fake.confirmed: {update_id: (seq of the getUpdates that confirmed it, trio time)}
    fake.delivered: {update_id: [seq of each getUpdates that returned it]}
    fake.pending_updates() -> [update dicts] not yet confirmed
    fake.chat(user_id).messages {message_id: Sent}, .topics {thread_id: name},
        .drafts [(thread_id, draft_id, text)] (every call), .live_drafts {thread_id: (draft_id,
        text)} (shown now: a real message in that thread ends it), .stoppable {thread_id}
        (the live draft there has a Stop button), .actions [(thread_id, action)]
    fake.bot_messages(user_id, thread_id=ANY) -> [Sent] in order
    fake.answered_queries {query_id: text}
    await fake.wait_until(predicate)

Fidelity notes: getUpdates forgets every update below the offset it is given, wakes a
waiting long poll when an update arrives, and answers a waiting poll 409 when a second
one comes (as Telegram does: the newer poller wins). Text limits are counted in UTF-16
units after HTML parsing. A reply (`reply_parameters`) must answer a message of the same
chat and topic (without `message_thread_id`, it goes into its message's topic): else
400 "message to be replied not found", unless the message does not exist at all and
`allow_sending_without_reply` is true (then it is sent as no reply). Deviations: message
entities are not reported back; a reply outside topics carries no message_thread_id;
updates are kept forever, not 24 hours.
"""

from __future__ import annotations

import contextlib
import json
import math
import mimetypes
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import attrs
import trio

from tests.fakes.mattermost_http import Request, Response, parse_multipart, serve_connection
from tests.fakes.telegram_html import HtmlRefused, parse_html, utf16_units

JSON = dict[str, Any]
TOKEN: Final = "123456789:AAFakeTokenForTestsOnly_abcdefghijk"
BOT_ID: Final = 123456789
MAX_TEXT: Final = 4096
MAX_CALLBACK_DATA: Final = 64
MAX_DOWNLOAD: Final = 20 * 1024 * 1024
MAX_UPLOAD: Final = 50 * 1024 * 1024
MESSAGE_METHODS: Final = frozenset(
    {"sendMessage", "sendDocument", "editMessageText", "editMessageReplyMarkup",
     "sendMessageDraft", "createForumTopic"}
)  # fmt: skip
REPLY_NOT_FOUND: Final = "Bad Request: message to be replied not found"
NOT_MODIFIED: Final = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
# Fields that arrive as strings in a form and mean numbers or JSON.
# A few of the emoji a bot may react with (ReactionTypeEmoji lists them all).
REACTION_EMOJI: Final = frozenset({"👍", "👎", "❤", "🔥", "👀", "🤔", "✍", "⚡", "🎉", "👌"})
_INT_FIELDS = {"chat_id", "message_thread_id", "message_id", "draft_id", "offset", "limit",
               "timeout", "reply_to_message_id"}  # fmt: skip
_JSON_FIELDS = {"reply_markup", "reply_parameters", "allowed_updates", "entities", "reaction",
                "commands"}
ANY: Final = object()


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after


@attrs.frozen
class FilePart:
    """An uploaded file in a multipart request (an InputFile)."""

    name: str
    data: bytes


@attrs.frozen
class Call:
    seq: int
    at: float
    method: str
    params: JSON
    status: int
    reply: JSON


@attrs.define
class Sent:
    """A message in a chat, as the fake keeps it."""

    message: JSON  # the Message object as returned
    html: str = ""  # what the bot sent (text with parse_mode, or escaped plain text)
    markup: JSON | None = None
    edits: int = 0
    reactions: list[str] = attrs.Factory(list)  # the bot's reaction now (setMessageReaction)
    reaction_changes: int = 0


@attrs.define
class ChatState:
    user: JSON
    messages: dict[int, Sent] = attrs.Factory(dict)
    topics: dict[int, str] = attrs.Factory(dict)
    drafts: list[tuple[int | None, int, str]] = attrs.Factory(list)  # every draft call
    # What each topic (None: the main view) shows as a draft now: a real message ends it.
    live_drafts: dict[int | None, tuple[int, str]] = attrs.Factory(dict)
    stoppable: set[int | None] = attrs.Factory(set)  # live drafts sent with can_stop
    actions: list[tuple[int | None, str]] = attrs.Factory(list)
    next_id: int = 1
    group: JSON | None = None  # a group's Chat (`user_sends_in_group`); None: a private chat


@attrs.define
class _Fault:
    status: int
    description: str
    remaining: int
    retry_after: int | None
    hang_up: bool
    after: int = 0  # calls let through first
    unreadable: bool = False  # `{"ok": true, "result": true}`: nothing our client can read
    page: str = ""  # an HTML page with `status` (a captive portal's, a proxy's): not the Bot API's


@attrs.define
class _Limiter:
    """GCRA per chat: `burst` at once, then one per 1/per_second (minus a grace)."""

    per_second: float
    burst: int
    methods: frozenset[str]
    grace_s: float
    tat: dict[int, float] = attrs.Factory(dict)

    def check(self, chat_id: int, now: float) -> int | None:
        """None when allowed; else whole seconds to wait (Telegram's retry_after)."""
        interval = 1.0 / self.per_second
        tat = max(self.tat.get(chat_id, now), now)
        allow_at = tat - (self.burst - 1) * interval - self.grace_s
        if now < allow_at:
            return max(1, math.ceil(allow_at - now))
        self.tat[chat_id] = tat + interval
        return None


class FakeBotApi:
    """The server and its test hooks (see the module docstring)."""

    def __init__(
        self,
        *,
        token: str = TOKEN,
        topics: bool = True,
        drafts: bool = True,
        users_may_create_topics: bool = True,
        username: str = "fake_claude_bot",
    ) -> None:
        self.token = token
        self.topics = topics
        self.drafts = drafts
        self.users_may_create_topics = users_may_create_topics
        self.username = username
        self.url = ""
        self.max_body_size = MAX_UPLOAD + (1 << 20)
        self.calls: list[Call] = []  # answered requests, in the order of their answers
        self.arrived: list[tuple[int, str]] = []  # (seq, method) of every request, on arrival
        self.proxied: list[str] = []  # "http://host" of requests that came as to a proxy
        self.confirmed: dict[int, tuple[int, float]] = {}
        self.delivered: dict[int, list[int]] = {}
        self.answered_queries: dict[str, str] = {}
        self.webhook_url = ""
        self.menu: list[tuple[str, str]] = []  # setMyCommands
        self._updates: list[JSON] = []  # not yet confirmed, in id order
        self._next_update_id = 700_000
        self._garbled: dict[int, Any] = {}  # real update id -> the id shown in its place
        self._allowed: list[str] | None = None
        self._chats: dict[int, ChatState] = {}
        self._files: dict[str, tuple[str, bytes, str]] = {}  # file_id -> (path, data, unique)
        self._queries: dict[str, bool] = {}  # id -> answered
        self._faults: dict[str, _Fault] = {}
        self.token_revoked = False
        self._limiter: _Limiter | None = None
        self._changed = trio.Event()
        self._poll_generation = 0
        self._seq = 0

    # --- serving ---------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        async with trio.open_nursery() as nursery:
            task_status.started(self.url)
            await trio.serve_listeners(self._serve_stream, listeners, handler_nursery=nursery)

    async def _serve_stream(self, stream: trio.SocketStream) -> None:
        await serve_connection(stream, self)

    async def upgrade(self, request: Request) -> Response:
        return _reply_error(404, "Not Found")

    def too_large(self, request: Request) -> Response:
        return _reply_error(413, "Request Entity Too Large")

    async def respond(self, request: Request) -> Response | None:
        if request.path.startswith("http://"):  # absolute form: we are someone's proxy
            self.proxied.append(request.path.split("/bot", 1)[0])
            request = attrs.evolve(request, path="/" + request.path.split("/", 3)[3])
        prefix = f"/bot{self.token}/"
        file_prefix = f"/file/bot{self.token}/"
        if request.path.startswith(file_prefix):
            if self.token_revoked:
                return _reply_error(401, "Unauthorized")
            return self._download(request.path[len(file_prefix) :])
        if not request.path.startswith(prefix):
            return _reply_error(401 if request.path.startswith("/bot") else 404,
                                "Unauthorized" if request.path.startswith("/bot") else "Not Found")
        method = request.path[len(prefix) :]
        self._seq += 1
        seq = self._seq
        self.arrived.append((seq, method))
        self._touch()
        if self.token_revoked:
            return self._record(seq, method, {}, _error_json(401, "Unauthorized"))
        try:
            params = _params(request)
        except ValueError as exc:
            return self._record(seq, method, {}, _error_json(400, f"Bad Request: {exc}"))
        fault = self._faults.get(method)
        if fault is not None and fault.after > 0:
            fault.after -= 1
            fault = None
        if fault is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                del self._faults[method]
            if fault.hang_up:
                self.calls.append(Call(seq, trio.current_time(), method, params, 0, {}))
                self._touch()
                return None
            if fault.page:
                self.calls.append(Call(seq, trio.current_time(), method, params, fault.status, {}))
                self._touch()
                return Response(fault.status, fault.page.encode(), content_type="text/html")
            reply = {"ok": True, "result": True} if fault.unreadable else _error_json(
                fault.status, fault.description, fault.retry_after)  # fmt: skip
            return self._record(seq, method, params, reply)
        try:
            result = await self._dispatch(seq, method, params)
        except ApiError as error:
            reply = _error_json(error.code, error.description, error.retry_after)
        else:
            reply = {"ok": True, "result": result}
        return self._record(seq, method, params, reply)

    def _record(self, seq: int, method: str, params: JSON, reply: JSON) -> Response:
        status = 200 if reply["ok"] else int(reply["error_code"])
        self.calls.append(Call(seq, trio.current_time(), method, params, status, reply))
        self._touch()
        return Response(status, json.dumps(reply).encode())

    async def _dispatch(self, seq: int, method: str, params: JSON) -> Any:
        handler: Callable[..., Any] | None = getattr(self, f"_m_{method}", None)
        if handler is None:
            raise ApiError(404, "Not Found")
        chat_id = params.get("chat_id")
        if self._limiter and method in self._limiter.methods and isinstance(chat_id, int):
            wait = self._limiter.check(chat_id, trio.current_time())
            if wait is not None:
                raise ApiError(429, f"Too Many Requests: retry after {wait}", wait)
        if method == "getUpdates":
            return await self._m_getUpdates(seq, params)
        return handler(params)

    # --- test hooks --------------------------------------------------------------------

    def add_user(self, user_id: int, first_name: str = "Alice", username: str = "") -> JSON:
        user: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        self._chats[user_id] = ChatState(user)
        return user

    def chat(self, user_id: int) -> ChatState:
        return self._chats[user_id]

    def user_sends(
        self,
        user_id: int,
        text: str = "",
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        document: tuple[str, bytes] | None = None,
        photo: bytes | None = None,
        voice: bytes | None = None,
        edited_id: int | None = None,
        album: str = "",
    ) -> JSON:
        chat = self._chats[user_id]
        message: JSON = {
            "message_id": edited_id or self._next_message_id(chat),
            "from": chat.user,
            "chat": _private(chat.user),
            "date": 1_780_000_000,
        }
        if thread_id is not None:
            if thread_id not in chat.topics:
                raise ValueError(f"no topic {thread_id}")
            message |= {"message_thread_id": thread_id, "is_topic_message": True}
        if reply_to is not None:
            message["reply_to_message"] = chat.messages[reply_to].message
        if album:  # one part of an album (a media group): a client sends one message per photo
            message["media_group_id"] = album
        files = document or photo or voice
        if text:
            message["caption" if files else "text"] = text
            if text.startswith("/") and not files:
                length = len(text.split()[0])
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        if document is not None:
            file_id, unique = self.add_file(document[1], f"documents/{document[0]}")
            message["document"] = {"file_id": file_id, "file_unique_id": unique,
                                   "file_name": document[0], "file_size": len(document[1])}
            if mime_type := mimetypes.guess_type(document[0])[0]:  # as a client says it
                message["document"]["mime_type"] = mime_type
        if photo is not None:
            file_id, unique = self.add_file(photo, "photos/photo.jpg")
            message["photo"] = [{"file_id": file_id, "file_unique_id": unique, "width": 90,
                                 "height": 90, "file_size": len(photo)}]
        if voice is not None:
            file_id, unique = self.add_file(voice, "voice/file_0.oga")
            message["voice"] = {"file_id": file_id, "file_unique_id": unique, "duration": 2,
                                "mime_type": "audio/ogg", "file_size": len(voice)}  # fmt: skip
        if edited_id is not None:
            message["edit_date"] = 1_780_000_100
            self.add_update({"edited_message": message})
        else:
            chat.messages[message["message_id"]] = Sent(message)
            self.add_update({"message": message})
        return message

    def user_sends_in_group(self, user_id: int, group_id: int, text: str, *, title: str = "team") -> JSON:
        """That person's message in a supergroup the bot is in (made at the first)."""
        group = self._chats.setdefault(group_id, ChatState(
            {"id": group_id, "is_bot": False, "first_name": title},
            group={"id": group_id, "type": "supergroup", "title": title},
        ))  # fmt: skip
        message: JSON = {"message_id": self._next_message_id(group), "from": self._chats[user_id].user,
                         "chat": group.group, "date": 1_780_000_000, "text": text}  # fmt: skip
        group.messages[message["message_id"]] = Sent(message)
        self.add_update({"message": message})
        return message

    def user_deletes(self, user_id: int, message_id: int) -> None:
        del self._chats[user_id].messages[message_id]

    def user_presses(self, user_id: int, message_id: int, data: str) -> str:
        chat = self._chats[user_id]
        query_id = str(secrets.randbits(62))
        self._queries[query_id] = False
        self.add_update({"callback_query": {
            "id": query_id, "from": chat.user, "chat_instance": f"ci{user_id}",
            "message": chat.messages[message_id].message, "data": data,
        }})  # fmt: skip
        return query_id

    def user_creates_topic(self, user_id: int, name: str) -> int:
        chat = self._chats[user_id]
        if not (self.topics and self.users_may_create_topics):
            raise ValueError("people cannot create topics in this chat")
        thread_id = self._next_message_id(chat)
        chat.topics[thread_id] = name
        message = {
            "message_id": thread_id, "from": chat.user, "chat": _private(chat.user),
            "date": 1_780_000_000, "message_thread_id": thread_id, "is_topic_message": True,
            "forum_topic_created": {"name": name, "icon_color": 7322096},
        }  # fmt: skip
        chat.messages[thread_id] = Sent(message)
        self.add_update({"message": message})
        return thread_id

    def stop_draft(self, user_id: int, draft_id: int, thread_id: int | None = None) -> int:
        payload: JSON = {"chat": _private(self._chats[user_id].user), "draft_id": draft_id}
        if thread_id is not None:
            payload["message_thread_id"] = thread_id
        return self.add_update({"stopped_message_generation": payload})

    def user_stops_draft(self, user_id: int, thread_id: int | None = None) -> int:
        chat = self._chats[user_id]
        if thread_id not in chat.live_drafts or thread_id not in chat.stoppable:
            raise ValueError(f"no draft with a Stop button shows in thread {thread_id}")
        draft_id, _text = chat.live_drafts.pop(thread_id)
        chat.stoppable.discard(thread_id)
        return self.stop_draft(user_id, draft_id, thread_id)

    def add_update(self, payload: JSON) -> int:
        self._next_update_id += 1
        if "update_id" in payload:
            self._garbled[self._next_update_id] = payload["update_id"]
        update = {**payload, "update_id": self._next_update_id}
        self._updates.append(update)
        self._touch()
        return self._next_update_id

    def add_file(self, data: bytes, path: str) -> tuple[str, str]:
        file_id = "F" + secrets.token_urlsafe(12)
        unique = "U" + secrets.token_urlsafe(6)
        self._files[file_id] = (f"{path.rsplit('/', 1)[0]}/file_{len(self._files)}_{path.rsplit('/', 1)[-1]}", data, unique)
        return file_id, unique

    def set_webhook(self, url: str) -> None:
        self.webhook_url = url

    def rate_limit(
        self,
        per_second: float | None = 1.0,
        burst: int = 3,
        methods: frozenset[str] = MESSAGE_METHODS,
        grace_s: float = 0.05,
    ) -> None:
        self._limiter = None if per_second is None else _Limiter(per_second, burst, methods, grace_s)

    def fail(
        self,
        method: str,
        status: int,
        description: str = "",
        *,
        count: int = 1,
        retry_after: int | None = None,
        hang_up: bool = False,
        after: int = 0,
        unreadable: bool = False,
        page: str = "",
    ) -> None:
        self._faults[method] = _Fault(status, description or f"fault {status}", count,
                                      retry_after, hang_up, after, unreadable, page)

    def clear_faults(self) -> None:
        self._faults.clear()

    def revoke_token(self) -> None:
        self.token_revoked = True
        self._touch()

    def accept_token(self) -> None:
        self.token_revoked = False
        self._touch()

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def pending_updates(self) -> list[JSON]:
        return list(self._updates)

    def bot_messages(self, user_id: int, thread_id: Any = ANY) -> list[Sent]:
        return [
            sent for sent in self._chats[user_id].messages.values()
            if sent.message.get("from", {}).get("id") == BOT_ID
            and (thread_id is ANY or sent.message.get("message_thread_id") == thread_id)
        ]  # fmt: skip

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    def _touch(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # --- methods -------------------------------------------------------------------------

    def bot_user(self) -> JSON:
        return {
            "id": BOT_ID, "is_bot": True, "first_name": "Claude", "username": self.username,
            "can_join_groups": True, "can_read_all_group_messages": False,
            "supports_inline_queries": False, "can_connect_to_business": False,
            "has_main_web_app": False, "has_topics_enabled": self.topics,
            "allows_users_to_create_topics": self.topics and self.users_may_create_topics,
        }  # fmt: skip

    def _m_getMe(self, params: JSON) -> JSON:
        return self.bot_user()

    def _m_setMyCommands(self, params: JSON) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise ApiError(400, "Bad Request: commands must be an array of at most 100")
        for command in commands:
            name, about = command.get("command", ""), command.get("description", "")
            if not (1 <= len(name) <= 32 and name == name.lower() and 1 <= len(about) <= 256):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        self.menu = [(c["command"], c["description"]) for c in commands]
        return True

    def _m_getChat(self, params: JSON) -> JSON:
        user = self._chat_of(params).user
        gifts = dict.fromkeys(("unlimited_gifts", "limited_gifts", "unique_gifts",
                               "premium_subscription", "gifts_from_channels"), True)  # fmt: skip
        info = _private(user) | {"accent_color_id": 0, "max_reaction_count": 11,
                                 "accepted_gift_types": gifts}  # fmt: skip
        if user.get("username"):
            info["username"] = user["username"]
        return info

    async def _m_getUpdates(self, seq: int, params: JSON) -> list[JSON]:
        if self.webhook_url:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                           "use deleteWebhook to delete the webhook first")
        self._poll_generation += 1
        generation = self._poll_generation
        self._touch()  # a poll already waiting learns it was superseded
        offset = params.get("offset")
        if isinstance(offset, int):
            self._forget_below(offset, seq)
        if "allowed_updates" in params:
            self._allowed = list(params["allowed_updates"])
        limit = int(params.get("limit", 100))
        timeout = float(params.get("timeout", 0))
        with trio.move_on_after(timeout):
            while not self._deliverable():
                await self._changed.wait()
                if generation != self._poll_generation:
                    raise ApiError(409, "Conflict: terminated by other getUpdates request; "
                                   "make sure that only one bot instance is running")
        if generation != self._poll_generation:
            raise ApiError(409, "Conflict: terminated by other getUpdates request; "
                           "make sure that only one bot instance is running")
        batch = self._deliverable()[:limit]
        for update in batch:
            self.delivered.setdefault(update["update_id"], []).append(seq)
        return [self._as_shown(update) for update in batch]

    def _as_shown(self, update: JSON) -> JSON:
        if update["update_id"] not in self._garbled:
            return update
        shown = self._garbled[update["update_id"]]
        without = {k: v for k, v in update.items() if k != "update_id"}
        return without if shown is None else without | {"update_id": shown}

    def _forget_below(self, offset: int, seq: int) -> None:
        keep = []
        for update in self._updates:
            if update["update_id"] < offset:
                self.confirmed[update["update_id"]] = (seq, trio.current_time())
            else:
                keep.append(update)
        self._updates = keep

    def _deliverable(self) -> list[JSON]:
        if self._allowed:  # an empty list or none at all: every kind but these three
            return [u for u in self._updates if any(kind in u for kind in self._allowed)]
        unasked = ("chat_member", "message_reaction", "message_reaction_count")
        return [u for u in self._updates if not any(kind in u for kind in unasked)]

    def _m_deleteWebhook(self, params: JSON) -> bool:
        self.webhook_url = ""
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _m_setWebhook(self, params: JSON) -> bool:
        self.webhook_url = str(params.get("url", ""))
        return True

    def _m_getWebhookInfo(self, params: JSON) -> JSON:
        return {"url": self.webhook_url, "has_custom_certificate": False,
                "pending_update_count": len(self._updates)}

    def _m_sendMessage(self, params: JSON) -> JSON:
        chat = self._chat_of(params)
        html_text, visible = _text(params, "text", minimum=1)
        markup = _markup(params)
        thread_id = self._thread_of(chat, params)
        replied = self._replied(chat, params)
        if replied is not None and params.get("message_thread_id") is None:
            thread_id = replied.get("message_thread_id")  # a reply goes where its message is
        elif replied is not None and replied.get("message_thread_id") != thread_id:
            raise ApiError(400, REPLY_NOT_FOUND)  # in another topic: never sent without it
        message = self._bot_message(chat, thread_id) | {"text": visible}
        if markup is not None:
            message["reply_markup"] = markup
        if replied is not None:
            message["reply_to_message"] = replied
        chat.messages[message["message_id"]] = Sent(message, html_text, markup)
        chat.live_drafts.pop(thread_id, None)
        chat.stoppable.discard(thread_id)
        return message

    def _m_editMessageText(self, params: JSON) -> JSON:
        chat = self._chat_of(params)
        sent = self._editable(chat, params)
        html_text, visible = _text(params, "text", minimum=1)
        markup = _markup(params)
        if html_text == sent.html and markup == sent.markup:
            raise ApiError(400, NOT_MODIFIED)
        sent.html, sent.markup, sent.edits = html_text, markup, sent.edits + 1
        sent.message = {k: v for k, v in sent.message.items() if k != "reply_markup"}
        sent.message |= {"text": visible, "edit_date": 1_780_000_200}
        if markup is not None:
            sent.message["reply_markup"] = markup
        return sent.message

    def _m_editMessageReplyMarkup(self, params: JSON) -> JSON:
        chat = self._chat_of(params)
        sent = self._editable(chat, params)
        markup = _markup(params)
        if markup == sent.markup:
            raise ApiError(400, NOT_MODIFIED)
        sent.markup, sent.edits = markup, sent.edits + 1
        sent.message = {k: v for k, v in sent.message.items() if k != "reply_markup"}
        if markup is not None:
            sent.message["reply_markup"] = markup
        return sent.message

    def _m_sendMessageDraft(self, params: JSON) -> bool:
        if not self.drafts:
            raise ApiError(404, "Not Found")
        chat = self._chat_of(params)
        draft_id = params.get("draft_id")
        if not isinstance(draft_id, int) or draft_id == 0:
            raise ApiError(400, "Bad Request: draft_id must be non-zero")
        _html_text, visible = _text(params, "text", minimum=0)
        thread_id = self._thread_of(chat, params)
        can_stop = params.get("can_stop", False)
        if not isinstance(can_stop, bool):
            raise ApiError(400, "Bad Request: can_stop must be a Boolean")
        chat.drafts.append((thread_id, draft_id, visible))
        chat.live_drafts[thread_id] = (draft_id, visible)
        if can_stop:
            chat.stoppable.add(thread_id)
        else:
            chat.stoppable.discard(thread_id)
        return True

    def _m_setMessageReaction(self, params: JSON) -> bool:
        chat = self._chat_of(params)
        sent = chat.messages.get(params.get("message_id", -1))
        if sent is None:
            raise ApiError(400, "Bad Request: message to react not found")
        reaction = params.get("reaction", [])
        if not isinstance(reaction, list) or len(reaction) > 1:
            raise ApiError(400, "Bad Request: REACTIONS_TOO_MANY")
        emojis = [r.get("emoji", "") for r in reaction if isinstance(r, dict)]
        if any(r.get("type") != "emoji" or e not in REACTION_EMOJI
               for r, e in zip(reaction, emojis, strict=True)):  # fmt: skip
            raise ApiError(400, "Bad Request: REACTION_INVALID")
        sent.reactions = emojis
        sent.reaction_changes += 1
        return True

    def _m_sendChatAction(self, params: JSON) -> bool:
        chat = self._chat_of(params)
        chat.actions.append((self._thread_of(chat, params), str(params.get("action", ""))))
        return True

    def _m_answerCallbackQuery(self, params: JSON) -> bool:
        query_id = str(params.get("callback_query_id", ""))
        if self._queries.get(query_id, True):
            raise ApiError(400, "Bad Request: query is too old and response timeout expired "
                           "or query ID is invalid")
        self._queries[query_id] = True
        self.answered_queries[query_id] = str(params.get("text", ""))
        return True

    def _m_createForumTopic(self, params: JSON) -> JSON:
        chat = self._chat_of(params)
        if not self.topics:
            raise ApiError(400, "Bad Request: the chat is not a forum")
        name = params.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 128:
            raise ApiError(400, "Bad Request: TOPIC_NAME_INVALID")
        thread_id = self._next_message_id(chat)
        chat.topics[thread_id] = name
        service = self._bot_message(chat, thread_id) | {
            "message_id": thread_id, "forum_topic_created": {"name": name, "icon_color": 7322096}
        }  # fmt: skip
        chat.messages[thread_id] = Sent(service)
        return {"message_thread_id": thread_id, "name": name, "icon_color": 7322096}

    def _m_getFile(self, params: JSON) -> JSON:
        file_id = str(params.get("file_id", ""))
        if file_id not in self._files:
            raise ApiError(400, "Bad Request: invalid file_id")
        path, data, unique = self._files[file_id]
        if len(data) > MAX_DOWNLOAD:
            raise ApiError(400, "Bad Request: file is too big")
        return {"file_id": file_id, "file_unique_id": unique, "file_size": len(data),
                "file_path": path}

    def _m_sendDocument(self, params: JSON) -> JSON:
        chat = self._chat_of(params)
        document = params.get("document")
        if isinstance(document, FilePart):
            file_id, unique = self.add_file(document.data, f"documents/{document.name}")
            name, size = document.name, len(document.data)
        elif isinstance(document, str) and document in self._files:
            file_id, unique, name = document, self._files[document][2], "file"
            size = len(self._files[document][1])
        else:
            raise ApiError(400, "Bad Request: there is no document in the request")
        message = self._bot_message(chat, self._thread_of(chat, params))
        message["document"] = {"file_id": file_id, "file_unique_id": unique, "file_name": name,
                               "file_size": size}
        if params.get("caption"):
            _html, message["caption"] = _text(params, "caption", minimum=0, limit=1024)
        chat.messages[message["message_id"]] = Sent(message)
        chat.live_drafts.pop(message.get("message_thread_id"), None)
        chat.stoppable.discard(message.get("message_thread_id"))
        return message

    # --- helpers -----------------------------------------------------------------------

    def _download(self, path: str) -> Response:
        for stored_path, data, _unique in self._files.values():
            if stored_path == urllib.parse.unquote(path):
                return Response(200, data, content_type="application/octet-stream")
        return _reply_error(404, "Not Found")

    def _chat_of(self, params: JSON) -> ChatState:
        chat_id = params.get("chat_id")
        if chat_id not in self._chats:
            raise ApiError(400, "Bad Request: chat not found")
        return self._chats[chat_id]

    def _thread_of(self, chat: ChatState, params: JSON) -> int | None:
        thread_id = params.get("message_thread_id")
        if thread_id is None:
            return None
        if thread_id not in chat.topics:
            raise ApiError(400, "Bad Request: message thread not found")
        return int(thread_id)

    def _replied(self, chat: ChatState, params: JSON) -> JSON | None:
        """The message `reply_parameters` names in this chat; None when there are none, or
        it does not exist and may be left out (`allow_sending_without_reply`)."""
        reply = params.get("reply_parameters")
        if reply is None:
            return None
        if not isinstance(reply, dict) or not isinstance(reply.get("message_id"), int):
            raise ApiError(400, "Bad Request: invalid reply parameters")
        sent = chat.messages.get(reply["message_id"])
        if sent is not None:
            return sent.message
        if reply.get("allow_sending_without_reply") is True:
            return None
        raise ApiError(400, REPLY_NOT_FOUND)

    def _editable(self, chat: ChatState, params: JSON) -> Sent:
        sent = chat.messages.get(params.get("message_id", -1))
        if sent is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if sent.message.get("from", {}).get("id") != BOT_ID:
            raise ApiError(400, "Bad Request: message can't be edited")
        return sent

    def _bot_message(self, chat: ChatState, thread_id: int | None) -> JSON:
        message: JSON = {
            "message_id": self._next_message_id(chat),
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Claude",
                     "username": self.username},
            "chat": chat.group or _private(chat.user),
            "date": 1_780_000_000,
        }  # fmt: skip
        if thread_id is not None:
            message |= {"message_thread_id": thread_id, "is_topic_message": True}
        return message

    def _next_message_id(self, chat: ChatState) -> int:
        chat.next_id += 1
        return chat.next_id


@contextlib.asynccontextmanager
async def running(fake: FakeBotApi | None = None, **settings: Any) -> AsyncIterator[FakeBotApi]:
    """A fake serving on loopback for the duration of the block."""
    fake = fake or FakeBotApi(**settings)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()


# --- pure helpers ------------------------------------------------------------------------


def _private(user: JSON) -> JSON:
    return {"id": user["id"], "type": "private", "first_name": user["first_name"]}


def _error_json(code: int, description: str, retry_after: int | None = None) -> JSON:
    reply: JSON = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        reply["parameters"] = {"retry_after": retry_after}
    return reply


def _reply_error(code: int, description: str) -> Response:
    return Response(code, json.dumps(_error_json(code, description)).encode())


def _text(params: JSON, field: str, *, minimum: int, limit: int = MAX_TEXT) -> tuple[str, str]:
    """(the text as sent, its visible text), checked like Telegram does."""
    raw = params.get(field, "")
    if not isinstance(raw, str):
        raise ApiError(400, f"Bad Request: {field} must be a string")
    if params.get("parse_mode") == "HTML":
        try:
            visible = parse_html(raw)
        except HtmlRefused as refused:
            raise ApiError(400, str(refused)) from None
    elif params.get("parse_mode") in (None, ""):
        visible = raw
    else:
        raise ApiError(400, f"Bad Request: unsupported parse_mode {params['parse_mode']!r}")
    if len(visible.strip()) < minimum:
        raise ApiError(400, f"Bad Request: {field} is empty" if field != "text"
                       else "Bad Request: message text is empty")
    if utf16_units(visible) > limit:
        raise ApiError(400, "Bad Request: message is too long")
    return raw, visible


def _markup(params: JSON) -> JSON | None:
    markup = params.get("reply_markup")
    if markup is None:
        return None
    if not isinstance(markup, dict) or not isinstance(rows := markup.get("inline_keyboard"), list):
        raise ApiError(400, "Bad Request: unsupported reply_markup")
    for row in rows:
        for button in row:
            data = button.get("callback_data", "")
            if not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            if not button.get("text"):
                raise ApiError(400, "Bad Request: text buttons are unallowed in the inline keyboard")
    return markup


def _params(request: Request) -> JSON:
    """A method's parameters from the query, a JSON body, a form or a multipart body."""
    params: JSON = dict(request.query)
    content_type = request.content_type.split(";")[0].strip().lower()
    if content_type == "application/json" and request.body:
        body = json.loads(request.body)
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return params | body
    if content_type == "application/x-www-form-urlencoded":
        params |= dict(urllib.parse.parse_qsl(request.body.decode(), keep_blank_values=True))
    elif content_type == "multipart/form-data":
        for part in parse_multipart(request.body, request.content_type):
            if part.filename is not None:
                params[part.name] = FilePart(part.filename, part.data)
            else:
                params[part.name] = part.data.decode()
    for name in _INT_FIELDS & params.keys():
        if isinstance(params[name], str):
            params[name] = int(params[name])
    for name in _JSON_FIELDS & params.keys():
        if isinstance(params[name], str):
            params[name] = json.loads(params[name])
    return params
