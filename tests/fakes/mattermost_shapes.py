"""Wire shapes and fixed rules of the fake Mattermost: ids, clock, errors, events, emoji.

Owns what a value looks like on the wire (API v4 JSON objects, WebSocket envelopes) and
the constants a real server enforces (FACTS.md §3). Pure functions and small data types
only: nothing here touches a socket, a trio primitive or the store's state.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import re
import struct
import time
import uuid
from typing import Any, TypeGuard

import attrs

JSON = dict[str, Any]

SERVER_VERSION = "10.11.0"
# hello's data.server_version and the X-Version-Id header: "<ver>.<build>.<cfghash>.<enterprise>".
SERVER_VERSION_STRING = f"{SERVER_VERSION}.{SERVER_VERSION}.fakeconfighash.false"

MAX_POST_RUNES = 16383  # PostMessageMaxRunesV2
MAX_PROPS_RUNES = 800_000  # PostPropsMaxRunes
MAX_FILE_IDS_RUNES = 300  # PostFileidsMaxRunes (JSON of the id list)
DEFAULT_MAX_FILE_SIZE = 104_857_600  # FileSettings.MaxFileSize
PENDING_POST_TTL_S = 30.0  # pendingPostIDsCacheTTL
MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 60
MAX_SINCE_POSTS = 1000

_STD_B32 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_MM_B32 = b"ybndrfg8ejkmcpqxot1uwisza345h769"
_TO_MM_ALPHABET = bytes.maketrans(_STD_B32, _MM_B32)
_ID_CHARS = frozenset(_MM_B32.decode())


def new_id() -> str:
    """A Mattermost `NewId()`: a UUIDv4 in unpadded base32 with MM's alphabet (26 chars)."""
    return base64.b32encode(uuid.uuid4().bytes).translate(_TO_MM_ALPHABET)[:26].decode()


def is_valid_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) == 26 and set(value) <= _ID_CHARS


@attrs.define
class MillisClock:
    """Wall-clock milliseconds that never repeat.

    Invariant: `last` is the value most recently returned; every call returns more than it,
    so posts created in the same millisecond still get strictly increasing create_at and
    listing order is deterministic.
    """

    last: int = 0
    ahead_ms: int = 0  # how far this server's clock is ahead of the machine's (< 0: behind)

    def __call__(self) -> int:
        now = self.wall_ms()
        self.last = now if now > self.last else self.last + 1
        return self.last

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.ahead_ms


class ApiError(Exception):
    """An AppError answer: HTTP status plus Mattermost's translation id."""

    def __init__(self, status: int, error_id: str, message: str, detailed: str = "") -> None:
        super().__init__(f"{status} {error_id}: {message}")
        self.status = status
        self.error_id = error_id
        self.message = message
        self.detailed = detailed

    def body(self, request_id: str) -> JSON:
        return app_error(self.status, self.error_id, self.message, request_id, self.detailed)


def app_error(
    status: int, error_id: str, message: str, request_id: str, detailed: str = ""
) -> JSON:
    return {
        "id": error_id,
        "message": message,
        "detailed_error": detailed,
        "request_id": request_id,
        "status_code": status,
    }


def forbidden() -> ApiError:
    return ApiError(
        403, "api.context.permissions.app_error", "You do not have the appropriate permissions."
    )


def bad_param(name: str) -> ApiError:
    return ApiError(
        400, "api.context.invalid_param.app_error", f"Invalid or missing {name} parameter."
    )


def bad_body(name: str) -> ApiError:
    return ApiError(
        400,
        "api.context.invalid_body_param.app_error",
        f"Invalid or missing {name} in request body.",
    )


def dumps(value: Any) -> str:
    """Compact JSON as Go's encoder writes it (no spaces, UTF-8 kept)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------------------------------
# WebSocket events


def broadcast_json(
    *, user_id: str = "", channel_id: str = "", omit_users: frozenset[str] = frozenset()
) -> JSON:
    """The `broadcast` object of an event envelope (model.WebsocketBroadcast JSON)."""
    return {
        "omit_users": {uid: True for uid in sorted(omit_users)} or None,
        "user_id": user_id,
        "channel_id": channel_id,
        "team_id": "",
        "connection_id": "",
        "omit_connection_id": "",
    }


@attrs.frozen
class Broadcast:
    """One server event and who receives it.

    `recipients` are resolved by the store when the event happens (channel members minus
    `omit_users`); `mentioned` recipients get `data.mentions` naming themselves, the way
    current servers' per-connection hook adds it.
    """

    event: str
    data: JSON
    recipients: frozenset[str]
    channel_id: str = ""
    user_id: str = ""
    omit_users: frozenset[str] = frozenset()
    mentioned: frozenset[str] = frozenset()

    def envelope_prefix(self, recipient: str) -> str:
        """The envelope JSON without its closing brace; the sender appends `,"seq":N}`.

        Appending the sequence number late lets one encoding serve every connection.
        """
        data = self.data
        if recipient in self.mentioned:
            data = {**data, "mentions": dumps([recipient])}
        envelope = {
            "event": self.event,
            "data": data,
            "broadcast": broadcast_json(
                user_id=self.user_id, channel_id=self.channel_id, omit_users=self.omit_users
            ),
        }
        return dumps(envelope)[:-1]


def hello_prefix(user_id: str, connection_id: str) -> str:
    envelope = {
        "event": "hello",
        "data": {
            "server_version": SERVER_VERSION_STRING,
            "connection_id": connection_id,
            "server_hostname": "fake",
        },
        "broadcast": broadcast_json(user_id=user_id),
    }
    return dumps(envelope)[:-1]


def ws_reply(seq_reply: int, data: JSON | None = None, error: ApiError | None = None) -> str:
    """A reply to a client action: no `event`, no `seq` (it does not consume the sequence)."""
    reply: JSON = {"status": "FAIL" if error else "OK", "seq_reply": seq_reply}
    if data is not None:
        reply["data"] = data
    if error is not None:
        reply["error"] = error.body("")
    return dumps(reply)


# ---------------------------------------------------------------------------------------
# Emoji: the one list of system emoji names the fake accepts for reactions.

EMOJI_NAME_RE = re.compile(r"^[a-zA-Z0-9\-\+_]+$")
MAX_EMOJI_NAME = 64

# A subset of model.SystemEmojis (public/model/emoji_data.go); aliases are distinct names.
SYSTEM_EMOJI: frozenset[str] = frozenset(
    [
        "+1",
        "thumbsup",
        "-1",
        "thumbsdown",
        "white_check_mark",
        "heavy_check_mark",
        "ballot_box_with_check",
        "x",
        "negative_squared_cross_mark",
        "octagonal_sign",
        "stop_sign",
        "repeat",
        "hourglass",
        "hourglass_flowing_sand",
        "warning",
        "hand",
        "raised_hand",
        "no_entry_sign",
        "no_entry",
        "arrows_counterclockwise",
        "arrows_clockwise",
        "eyes",
        "smile",
        "smiley",
        "grinning",
        "laughing",
        "joy",
        "slightly_smiling_face",
        "wink",
        "blush",
        "heart",
        "broken_heart",
        "tada",
        "rocket",
        "fire",
        "star",
        "star2",
        "sparkles",
        "zap",
        "boom",
        "thinking",
        "thinking_face",
        "confused",
        "worried",
        "cry",
        "sob",
        "angry",
        "rage",
        "scream",
        "sweat_smile",
        "sunglasses",
        "ok_hand",
        "wave",
        "clap",
        "pray",
        "muscle",
        "point_up",
        "point_down",
        "point_left",
        "point_right",
        "question",
        "grey_question",
        "exclamation",
        "heavy_exclamation_mark",
        "grey_exclamation",
        "bulb",
        "memo",
        "pencil",
        "pencil2",
        "bug",
        "wrench",
        "hammer",
        "gear",
        "lock",
        "unlock",
        "key",
        "mag",
        "mag_right",
        "link",
        "paperclip",
        "pushpin",
        "calendar",
        "clock1",
        "alarm_clock",
        "stopwatch",
        "timer_clock",
        "bell",
        "no_bell",
        "speech_balloon",
        "thought_balloon",
        "email",
        "envelope",
        "inbox_tray",
        "outbox_tray",
        "package",
        "file_folder",
        "open_file_folder",
        "page_facing_up",
        "clipboard",
        "chart_with_upwards_trend",
        "chart_with_downwards_trend",
        "bar_chart",
        "computer",
        "desktop_computer",
        "keyboard",
        "floppy_disk",
        "cd",
        "dvd",
        "battery",
        "electric_plug",
        "red_circle",
        "large_blue_circle",
        "white_circle",
        "black_circle",
        "green_heart",
        "blue_heart",
        "yellow_heart",
        "purple_heart",
        "heavy_plus_sign",
        "heavy_minus_sign",
        "heavy_multiplication_x",
        "arrow_up",
        "arrow_down",
        "arrow_left",
        "arrow_right",
        "arrow_forward",
        "arrow_backward",
        "fast_forward",
        "rewind",
        "pause_button",
        "stop_button",
        "record_button",
        "play_or_pause_button",
        "recycle",
        "skull",
        "ghost",
        "robot",
        "robot_face",
        "alien",
        "coffee",
        "beer",
        "pizza",
        "cake",
        "100",
        "1234",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "keycap_ten",
        "zero",
        "new",
        "free",
        "up",
        "cool",
        "ok",
        "sos",
        "vs",
        "information_source",
        "white_flag",
        "checkered_flag",
        "triangular_flag_on_post",
        "construction",
        "rotating_light",
        "trophy",
        "medal",
        "first_place_medal",
    ]
)


def emoji_error(name: str) -> ApiError | None:
    """Why `name` cannot be a reaction, or None (MM model/reaction.go, app/reaction.go)."""
    if not name or len(name) > MAX_EMOJI_NAME or not EMOJI_NAME_RE.match(name):
        return ApiError(400, "model.reaction.is_valid.emoji_name.app_error", "Invalid emoji name.")
    if name not in SYSTEM_EMOJI:
        # Not a system emoji, and the fake has no custom emoji: GetEmojiByName fails.
        return ApiError(404, "app.emoji.get_by_name.no_result", "Unable to find the emoji.")
    return None


# ---------------------------------------------------------------------------------------
# Object builders


def user_json(user_id: str, username: str, created: int, *, is_bot: bool) -> JSON:
    user: JSON = {
        "id": user_id,
        "create_at": created,
        "update_at": created,
        "delete_at": 0,
        "username": username,
        "auth_service": "",
        "email": f"{username}@example.invalid",
        "nickname": "",
        "first_name": "",
        "last_name": "",
        "position": "",
        "roles": "system_user",
        "props": {},
        "notify_props": {
            "channel": "true",
            "comments": "never",
            "desktop": "mention",
            "desktop_sound": "true",
            "email": "true",
            "first_name": "false",
            "mention_keys": "",
            "push": "mention",
            "push_status": "away",
        },
        "last_password_update": created,
        "locale": "en",
        "timezone": {"automaticTimezone": "", "manualTimezone": "", "useAutomaticTimezone": "true"},
        "disable_welcome_email": False,
    }
    if is_bot:
        # `is_bot` is omitempty in model.User: humans do not carry the key at all.
        user["is_bot"] = True
        user["bot_description"] = "fake bot"
    return user


def channel_json(
    channel_id: str,
    created: int,
    *,
    kind: str,
    name: str,
    display_name: str = "",
    team_id: str = "",
) -> JSON:
    return {
        "id": channel_id,
        "create_at": created,
        "update_at": created,
        "delete_at": 0,
        "team_id": team_id,
        "type": kind,
        "display_name": display_name,
        "name": name,
        "header": "",
        "purpose": "",
        "last_post_at": 0,
        "total_msg_count": 0,
        "extra_update_at": 0,
        "creator_id": "",
        "last_root_post_at": 0,
        "total_msg_count_root": 0,
    }


def post_json(
    post_id: str,
    created: int,
    *,
    user_id: str,
    channel_id: str,
    root_id: str,
    message: str,
    kind: str,
    props: JSON,
    file_ids: list[str],
) -> JSON:
    """The stored (persistent) fields of a Post; `Store.render` adds the transient ones."""
    return {
        "id": post_id,
        "create_at": created,
        "update_at": created,
        "edit_at": 0,
        "delete_at": 0,
        "is_pinned": False,
        "user_id": user_id,
        "channel_id": channel_id,
        "root_id": root_id,
        "original_id": "",
        "message": message,
        "type": kind,
        "props": props,
        "hashtags": "",
        "file_ids": file_ids,
    }


def reaction_json(user_id: str, post_id: str, emoji: str, channel_id: str, now: int) -> JSON:
    return {
        "user_id": user_id,
        "post_id": post_id,
        "emoji_name": emoji,
        "create_at": now,
        "update_at": now,
        "delete_at": 0,
        "remote_id": "",
        "channel_id": channel_id,
    }


def file_info_json(
    file_id: str, user_id: str, channel_id: str, name: str, data: bytes, now: int
) -> JSON:
    """A FileInfo as stored; `post_id` is added when a post claims the file."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1] or "file"
    _stem, dot, ext = base.rpartition(".")
    extension = ext.lower() if dot else ""
    mime = mimetypes.guess_type(base)[0] or ""
    info: JSON = {
        "id": file_id,
        "user_id": user_id,
        "post_id": "",
        "channel_id": channel_id,
        "create_at": now,
        "update_at": now,
        "delete_at": 0,
        "name": base,
        "extension": extension,
        "size": len(data),
        "mime_type": mime,
        "mini_preview": None,
        "remote_id": "",
        "archived": False,
    }
    if mime.startswith("image/"):
        info["has_preview_image"] = mime != "image/svg+xml"
        width, height = image_size(data)
        if width:
            info["width"], info["height"] = width, height
    return info


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG or GIF (0, 0 when unknown): enough for FileInfo."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    return 0, 0


def render_file_info(info: JSON) -> JSON:
    out = dict(info)
    if not out["post_id"]:
        del out["post_id"]  # omitempty in model.FileInfo
    return out
