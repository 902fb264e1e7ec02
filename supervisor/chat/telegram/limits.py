"""What a Telegram chat allows, as data the core can be handed (the port's ChatLimits).

Owns the numbers only; where each comes from is said beside it
(../shared/reference/telegram/FACTS.md). Nothing here does anything.
"""

from __future__ import annotations

from typing import Final

import attrs

from supervisor.chat.telegram.choices import MAX_CALLBACK_DATA_BYTES
from supervisor.chat.telegram.client import (
    MAX_DOWNLOAD_BYTES,
    MAX_MESSAGE_CHARS,
    MAX_UPLOAD_BYTES,
)


@attrs.frozen
class TelegramLimits:
    # Text of one message after entity parsing, in UTF-16 code units (runs.units).
    max_message_chars: int = MAX_MESSAGE_CHARS
    max_caption_chars: int = 1024  # a file's caption (sendDocument), counted the same way
    # Where drafts fail, one message is edited in place at most this often.
    min_edit_interval_s: float = 1.0
    # sendChatAction shows "typing" for at most 5 s: repeat a little sooner.
    typing_every_s: float = 4.0
    max_callback_data_bytes: int = MAX_CALLBACK_DATA_BYTES
    max_download_bytes: int = MAX_DOWNLOAD_BYTES  # getFile, for bots
    max_upload_bytes: int = MAX_UPLOAD_BYTES  # sendDocument, for bots
    max_topic_name_chars: int = 128  # createForumTopic: 1-128
    markup: str = "html"  # render.render / render.render_parts


LIMITS: Final = TelegramLimits()
