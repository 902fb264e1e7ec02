"""What a thread should show, said without knowing the server: one op per post.

The renderer and the session produce these; the thread outbox turns them into REST calls.
Never holds server post ids or does I/O.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class PutPost:
    """The post known locally as `key` should now show `text` (created if it is new).

    Keys are stable strings unique within a thread ("t3.0.0", "t3.done", "perm.<id>"); the
    order in which keys are first put is the order in which their posts appear.

    `final`: this is the post's last text (a notice, a finished answer, a settled request):
    it goes out at once, and once the server shows it the outbox forgets the post.
    `deferrable` (the default): an intermediate text that a later put may replace (a
    streaming answer): its edits are spaced by the edit interval, and it waits while the
    request budget is tight. A put that is neither is urgent but may still change: a
    request being asked, the first words of an answer, a post the answer has moved past.
    """

    key: str
    text: str
    final: bool = False
    deferrable: bool = True
    # The person's post this one answers, for a front end that shows a reply as such (a
    # Telegram reply quotes it: there a notice cannot link it). Taken when it is created.
    reply_to: str = ""

    @classmethod
    def last(cls, key: str, text: str) -> PutPost:
        """The post's final text: sent at once, then forgotten."""
        return cls(key, text, final=True, deferrable=False)

    @classmethod
    def urgent(cls, key: str, text: str) -> PutPost:
        """Sent at once, but the post may change again."""
        return cls(key, text, final=False, deferrable=False)
