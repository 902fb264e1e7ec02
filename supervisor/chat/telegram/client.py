"""The Bot API client: the methods of Telegram's Bot API the supervisor uses.

Each method is one call through `calls.BotCaller`, which owns the HTTP session, the pacing,
the retry loop and the token (its docstring says what it guarantees); here are only the
methods' parameters and what their answers decode to (an update with no usable id is
said in the log and passed over: it could never be confirmed).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import Final

from supervisor.chat.telegram import codec
from supervisor.chat.telegram.calls import REQUEST_TIMEOUT, BadRequest, BotCaller
from supervisor.chat.telegram.codec import JSONObject

log = logging.getLogger("supervisor.telegram")

MAX_MESSAGE_CHARS: Final = 4096  # text after entity parsing, in UTF-16 code units
MAX_DOWNLOAD_BYTES: Final = 20 * 1024 * 1024  # getFile's limit for bots
MAX_UPLOAD_BYTES: Final = 50 * 1024 * 1024  # sendDocument's limit for bots


class BotApi(BotCaller):
    """One client per bot token. Safe to share between tasks."""

    # --- the bot and its updates ----------------------------------------------------

    async def get_me(self, *, retry: bool = True, wait_for_token: bool = True) -> codec.User:
        result = await self.call("getMe", retry=retry, wait_for_token=wait_for_token, listening=True)
        return codec.structure(result, codec.User)

    async def watch_token(self) -> None:
        """Run the token's watch (`token`), getMe its check: from now on a call refused
        with 401 waits for the token. Runs until cancelled."""
        await self.token.run(functools.partial(self.get_me, wait_for_token=False))

    async def get_updates(
        self,
        offset: int | None,
        *,
        poll_s: int,
        allowed_updates: Iterable[str],
        limit: int = 100,
    ) -> codec.UpdateBatch:
        """The next updates from `offset` on (every update below it is confirmed by this
        call), waiting up to `poll_s` seconds for one to arrive."""
        params: JSONObject = {
            "timeout": poll_s,
            "limit": limit,
            "allowed_updates": list(allowed_updates),
        }
        if offset is not None:
            params["offset"] = offset
        result = await self.call("getUpdates", params, read_timeout=REQUEST_TIMEOUT + poll_s, listening=True)
        updates = codec.decode_updates(result)
        passed_over: tuple[str, ...] = ()
        if len(updates) < len(result):  # Telegram never sends one; a proxy might garble it
            passed_over = tuple(self._scrub(why) for why in filter(None, map(codec.unusable_update, result)))
        return codec.UpdateBatch(updates, passed_over)

    async def delete_webhook(self) -> None:
        """Switch a webhook off so getUpdates works, keeping the updates waiting.

        Never `drop_pending_updates`: what was written while we were away is the backlog
        we promise to handle.
        """
        await self.call("deleteWebhook", {})

    async def get_webhook_info(self, *, retry: bool = True) -> codec.WebhookInfo:
        return codec.structure(await self.call("getWebhookInfo", retry=retry), codec.WebhookInfo)

    # --- messages ----------------------------------------------------------------------

    async def send_message(
        self,
        chat_id: int,
        html: str,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        reply_markup: JSONObject | None = None,
        plain: bool = False,
    ) -> codec.Message:
        """`plain`: the text is shown as it is (no parse mode), not read as HTML."""
        params = _message_params(chat_id, html, thread_id, reply_markup, plain=plain)
        if reply_to is not None:
            # A reply to a message deleted meanwhile goes all the same, quoting nothing.
            params["reply_parameters"] = {
                "message_id": reply_to,
                "allow_sending_without_reply": True,
            }
        result = await self.call("sendMessage", params, chat_id=chat_id)
        return codec.structure(result, codec.Message)

    async def edit_message_text(
        self,
        chat_id: int,
        message_id: int,
        html: str,
        *,
        reply_markup: JSONObject | None = None,
        plain: bool = False,
    ) -> codec.Message | None:
        """Replace a message's text (and its buttons: none unless `reply_markup`).
        Already showing exactly that is success. `plain`: as in `send_message`.

        The edited message as Telegram tells it (its topic, for one): None when the
        answer tells none ("not modified" says nothing; an unreadable one is no failure
        of the edit, which is done)."""
        params = _message_params(chat_id, html, None, reply_markup, plain=plain)
        params["message_id"] = message_id
        result = await self.call("editMessageText", params, chat_id=chat_id)
        try:
            return codec.structure(result, codec.Message) if isinstance(result, dict) else None
        except codec.MalformedReply as exc:
            log.info("editMessageText answered with no message we can read (%s)", exc)
            return None

    async def edit_message_reply_markup(
        self, chat_id: int, message_id: int, reply_markup: JSONObject | None = None
    ) -> None:
        """Set a message's buttons; without `reply_markup`, remove them."""
        params: JSONObject = {"chat_id": chat_id, "message_id": message_id}
        if reply_markup is not None:
            params["reply_markup"] = reply_markup
        await self.call("editMessageReplyMarkup", params, chat_id=chat_id)

    async def send_message_draft(
        self,
        chat_id: int,
        draft_id: int,
        html: str,
        *,
        thread_id: int | None = None,
        can_stop: bool = False,
        plain: bool = False,
    ) -> None:
        """Show (or replace) the live draft `draft_id` (non-zero) in a private chat.

        `can_stop` (Bot API 10.3) gives the person a Stop button (pressing it is a
        `stopped_message_generation` update). A server older than 10.3 ignores it, as
        Telegram ignores every parameter it does not know: no Stop button there, `/stop`
        still works. A server without drafts answers 400 or 404: the caller falls back
        to editing a message.
        """
        if draft_id == 0:
            raise ValueError("draft_id must be non-zero")
        params = _message_params(chat_id, html, thread_id, None, plain=plain)
        params["draft_id"] = draft_id
        if can_stop:
            params["can_stop"] = True
        await self.call("sendMessageDraft", params, chat_id=chat_id)

    async def send_chat_action(
        self, chat_id: int, *, thread_id: int | None = None, action: str = "typing"
    ) -> None:
        params: JSONObject = {"chat_id": chat_id, "action": action}
        if thread_id is not None:
            params["message_thread_id"] = thread_id
        await self.call("sendChatAction", params, chat_id=chat_id)

    async def get_chat(self, chat_id: int, *, retry: bool = True) -> codec.Chat:
        return codec.structure(await self.call("getChat", {"chat_id": chat_id}, retry=retry), codec.Chat)

    async def answer_callback_query(self, query_id: str, text: str = "", *, chat_id: int | None = None) -> None:
        """`chat_id`: the presser's private chat, so that a 429 holds that chat alone (the
        answer is no message: it takes no slot of the chat's)."""
        params: JSONObject = {"callback_query_id": query_id}
        if text:
            params["text"] = text
        await self.call("answerCallbackQuery", params, chat_id=chat_id)

    async def create_forum_topic(self, chat_id: int, name: str) -> codec.ForumTopic:
        """A topic in a private chat (the bot's topic mode must be on: else BadRequest
        "the chat is not a forum"). `name` is 1-128 characters."""
        result = await self.call(
            "createForumTopic", {"chat_id": chat_id, "name": name}, chat_id=chat_id
        )
        return codec.structure(result, codec.ForumTopic)

    # --- files -------------------------------------------------------------------------

    async def get_file(self, file_id: str) -> codec.File:
        return codec.structure(await self.call("getFile", {"file_id": file_id}), codec.File)

    async def download(self, file_id: str, *, max_bytes: int = MAX_DOWNLOAD_BYTES) -> bytes:
        """The content of a file a person sent; BadRequest when it is larger than
        `max_bytes` (Telegram itself serves bots at most 20 MB)."""
        info = await self.get_file(file_id)
        if info.file_size is not None and info.file_size > max_bytes:
            raise BadRequest("getFile", 400, f"file is too big ({info.file_size} bytes)")
        if not info.file_path:
            raise BadRequest("getFile", 400, "no file_path: the file is too big to download")
        return await self.download_path(info.file_path, max_bytes)

    async def send_document(
        self,
        chat_id: int,
        name: str,
        data: bytes,
        *,
        thread_id: int | None = None,
        caption_html: str = "",
    ) -> codec.Message:
        if len(data) > MAX_UPLOAD_BYTES:
            raise BadRequest("sendDocument", 413, f"{len(data)} bytes is over Telegram's 50 MB")
        form: dict[str, str] = {"chat_id": str(chat_id)}
        if thread_id is not None:
            form["message_thread_id"] = str(thread_id)
        if caption_html:
            form["caption"] = caption_html
            form["parse_mode"] = "HTML"
        result = await self.call(
            "sendDocument", form=form, files={"document": (name, data)}, chat_id=chat_id
        )
        return codec.structure(result, codec.Message)


def _message_params(
    chat_id: int, html: str, thread_id: int | None, reply_markup: JSONObject | None, *, plain: bool = False
) -> JSONObject:
    params: JSONObject = {"chat_id": chat_id, "text": html}
    if not plain:
        params["parse_mode"] = "HTML"
    if thread_id is not None:
        params["message_thread_id"] = thread_id
    if reply_markup is not None:
        params["reply_markup"] = reply_markup
    return params
