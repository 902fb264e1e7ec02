"""Whether Mattermost still takes the bot's token, while the supervisor runs.

The watch itself (one check, said once, what waits meanwhile) is shared by the front
ends: `supervisor.chat.token`. Here are Mattermost's words for it, and what its parts
do with it. A token revoked (or the bot deactivated) while we run: every REST call is
refused with 401, and the WebSocket is let in but never greeted. So:
- a REST call refused with 401, or a WebSocket connection that got past its handshake
  (or was refused it with 401) and heard nothing, only suspects the token: the check
  (GET /users/me), made at once, decides;
- while it is refused, the REST calls it refused wait for it to be taken again, and so
  does the WebSocket's next try: answers are posted, in order, once it is, and the posts
  written meanwhile are caught up on the WebSocket's new hello.

Before `run` starts (the start's own GET /users/me, the doctor's), a 401 stays the
caller's `ChatError`: at start it is a one-sentence failure.
"""

from __future__ import annotations

import logging

from supervisor.chat import token

log = logging.getLogger("supervisor.mattermost")


class TokenWatch(token.TokenWatch):
    """Owned by the REST client (`MattermostRest.token`); the WebSocket is handed it, and
    the link runs `run` beside the WebSocket. Only the words are Mattermost's."""

    def __init__(self, base_url: str) -> None:
        super().__init__(f"Mattermost at {base_url}", "GET /users/me", "revoked, or the bot deactivated?", log)
