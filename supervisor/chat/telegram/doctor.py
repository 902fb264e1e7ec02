"""`supervisor check` for a Telegram bot: the token, topic mode, and any webhook.

Owns three checks, each one line with a fix: the token is accepted (`getMe`), the bot's
topic mode is on (one topic per session) or off (the active-session model), and no
webhook is set (getUpdates cannot run beside one; the supervisor deletes it at start,
keeping the updates waiting). The `*_result` functions are pure; `telegram_checks` makes
the two requests, unretried, each bounded by `network_s`.

It must never print the token (the report is meant to be pasted into a ticket): the
client keeps it out of every error, and these lines name only the bot's @username.

`Check` is the doctor's `CheckResult` (name, ok, detail, fix), from `supervisor.checks`.
"""

from __future__ import annotations

from typing import Final

import trio

from supervisor.chat.telegram.calls import BotApiError, Unauthorized
from supervisor.chat.telegram.client import BotApi
from supervisor.chat.telegram.codec import MalformedReply, User, WebhookInfo
from supervisor.chat.telegram.config import TelegramConfig
from supervisor.checks import CheckResult, clipped, skipped, timed_out

TOKEN_FIX: Final = (
    "get the bot's token from @BotFather (/mybots > API Token) and put it in "
    "telegram.token_file or SUPERVISOR_TELEGRAM_TOKEN"
)
TOPICS_FIX: Final = (
    "for one topic per session, switch on the bot's Threaded mode in @BotFather "
    "(/mybots > Bot Settings); until then /session NAME picks where plain text goes"
)
WEBHOOK_FIX: Final = (
    "another program may receive this bot's updates through it: stop that program, or "
    "give the supervisor a bot of its own; `run` deletes the webhook, keeping waiting updates"
)
Check = CheckResult


def token_result(me: User) -> Check:
    who = f"@{me.username}" if me.username else f"bot {me.id}"
    if not me.is_bot:
        return Check("telegram token", False, f"{who} is not a bot", TOKEN_FIX)
    return Check("telegram token", True, f"{who} accepts the token")


def token_failed_result(error: BaseException) -> Check:
    if isinstance(error, Unauthorized):
        return Check("telegram token", False, "Telegram refused the token (401)", TOKEN_FIX)
    if isinstance(error, BotApiError) and error.status == 0:
        return Check(
            "telegram token",
            False,
            f"cannot reach the Bot API: {clipped(error.description)}",
            "check this machine's network (and telegram.api_url if you set one)",
        )
    if isinstance(error, BotApiError):
        said = clipped(error.description) or "no reason given"
        return Check("telegram token", False, f"getMe failed: {error.status} {said}", TOKEN_FIX)
    return Check(
        "telegram token",
        False,
        f"getMe gave an answer that is not the Bot API's: {clipped(str(error))}",
        "check telegram.api_url: it should be the Bot API server, without /bot<token>",
    )


def topics_result(me: User) -> Check:
    if me.has_topics_enabled:
        people = (
            "people may open topics too"
            if me.allows_users_to_create_topics
            else "only the bot opens topics"
        )
        return Check("telegram topics", True, f"topic mode on: one topic per session ({people})")
    return Check("telegram topics", True, "topic mode off: one active session per chat", TOPICS_FIX)


def webhook_result(info: WebhookInfo) -> Check:
    waiting = f"{info.pending_update_count} update(s) waiting"
    if not info.url:
        return Check("telegram webhook", True, f"none set; {waiting}")
    host = info.url.split("://", 1)[-1].split("/", 1)[0]
    return Check("telegram webhook", False, f"a webhook to {host} is set; {waiting}", WEBHOOK_FIX)


def _skipped(name: str) -> Check:
    return skipped(name, "the token check failed")


def _timed_out(name: str, seconds: float) -> Check:
    fix = "check this machine's network (and telegram.api_url if you set one)"
    return timed_out(name, seconds, "no answer from the Bot API", fix)


async def telegram_checks(api: BotApi, *, network_s: float = 5.0) -> list[Check]:
    """The token, topic mode and webhook lines, in that order."""
    me: User | None = None
    token: Check = _timed_out("telegram token", network_s)
    with trio.move_on_after(network_s):
        try:
            me = await api.get_me(retry=False)
            token = token_result(me)
        except (BotApiError, MalformedReply) as error:
            token = token_failed_result(error)
    if me is None or not token.ok:
        return [token, _skipped("telegram topics"), _skipped("telegram webhook")]
    webhook: Check = _timed_out("telegram webhook", network_s)
    with trio.move_on_after(network_s):
        try:
            webhook = webhook_result(await api.get_webhook_info(retry=False))
        except (BotApiError, MalformedReply) as error:
            said = clipped(getattr(error, "description", "") or str(error))
            webhook = Check("telegram webhook", False, f"getWebhookInfo failed: {said}")
    return [token, topics_result(me), webhook]


async def config_checks(section: TelegramConfig, *, network_s: float = 5.0) -> list[Check]:
    """`telegram_checks` for the `[telegram]` section: its token against its server."""
    api = BotApi(section.token, api_url=section.api_url)
    try:
        return await telegram_checks(api, network_s=network_s)
    finally:
        await api.aclose()
