"""`supervisor check` for a Telegram bot: the token, topic mode, any webhook, its people.

Owns four checks, each one line with a fix: the token is accepted (`getMe`), the bot's
topic mode is on (one topic per session) or off (the active-session model), no webhook
is set (getUpdates cannot run beside one; the supervisor deletes it at start, keeping the
updates waiting), and which allowed people have a chat with the bot yet (`getChat`: a
bot cannot write first, so someone who never pressed Start, or an id that is not theirs,
hears nothing). The `*_result` functions are pure; `telegram_checks` makes the requests,
unretried, each bounded by `network_s`.

It must never print the token (the report is meant to be pasted into a ticket): the
client keeps it out of every error, and these lines name only the bot's @username.

`Check` is the doctor's `CheckResult` (name, ok, detail, fix), from `supervisor.checks`.
"""

from __future__ import annotations

from collections.abc import Sequence
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
PEOPLE_FIX: Final = (
    "each of them opens the bot in Telegram and presses Start (a bot cannot write first); "
    "if they did, the id is not theirs: a bot such as @userinfobot tells a person's id"
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


def people_result(started: dict[int, str], waiting: list[int]) -> Check:
    """`started`: id -> how Telegram names them; `waiting`: ids with no chat with the bot."""
    said = ", ".join(started.values())
    if not waiting:
        return Check("telegram people", True, f"{said} can be answered" if said else "none allowed")
    ids = ", ".join(map(str, waiting))
    detail = f"no chat with the bot yet: {ids}" + (f" ({said} can be answered)" if said else "")
    return Check("telegram people", True, detail, PEOPLE_FIX)


def _skipped(name: str) -> Check:
    return skipped(name, "the token check failed")


def _timed_out(name: str, seconds: float) -> Check:
    fix = "check this machine's network (and telegram.api_url if you set one)"
    return timed_out(name, seconds, "no answer from the Bot API", fix)


async def telegram_checks(api: BotApi, *, network_s: float = 5.0, people: Sequence[int] = ()) -> list[Check]:
    """The token, topic mode and webhook lines, in that order, then the people's when
    `people` (allowed user ids) are given."""
    me: User | None = None
    token: Check = _timed_out("telegram token", network_s)
    with trio.move_on_after(network_s):
        try:
            me = await api.get_me(retry=False)
            token = token_result(me)
        except (BotApiError, MalformedReply) as error:
            token = token_failed_result(error)
    if me is None or not token.ok:
        return [token, _skipped("telegram topics"), _skipped("telegram webhook")] + (
            [_skipped("telegram people")] if people else []
        )
    webhook: Check = _timed_out("telegram webhook", network_s)
    with trio.move_on_after(network_s):
        try:
            webhook = webhook_result(await api.get_webhook_info(retry=False))
        except (BotApiError, MalformedReply) as error:
            said = clipped(getattr(error, "description", "") or str(error))
            webhook = Check("telegram webhook", False, f"getWebhookInfo failed: {said}")
    return [token, topics_result(me), webhook] + ([await _people_check(api, people, network_s)] if people else [])


async def _people_check(api: BotApi, people: Sequence[int], network_s: float) -> Check:
    started: dict[int, str] = {}
    waiting: list[int] = []
    failed: list[str] = []

    async def look(user_id: int) -> None:
        try:
            chat = await api.get_chat(user_id, retry=False)
        except (BotApiError, MalformedReply) as error:
            said = getattr(error, "description", "") or str(error)
            if isinstance(error, BotApiError) and error.status == 400 and "chat not found" in said:
                waiting.append(user_id)
            else:
                failed.append(f"{user_id}: {clipped(said)}")
            return
        started[user_id] = f"@{chat.username}" if chat.username else str(user_id)

    people = tuple(dict.fromkeys(people))  # an id listed twice is one person
    with trio.move_on_after(network_s):
        async with trio.open_nursery() as nursery:
            for user_id in people:
                nursery.start_soon(look, user_id)
    if failed:
        return Check("telegram people", False, f"getChat failed: {failed[0]}")
    if len(started) + len(waiting) < len(people):
        return _timed_out("telegram people", network_s)
    return people_result({u: started[u] for u in people if u in started}, [u for u in people if u in waiting])


async def config_checks(section: TelegramConfig, *, network_s: float = 5.0) -> list[Check]:
    """`telegram_checks` for the `[telegram]` section: its token against its server, and
    its allowed people."""
    api = BotApi(section.token, api_url=section.api_url)
    try:
        return await telegram_checks(api, network_s=network_s, people=section.allowed_user_ids)
    finally:
        await api.aclose()
