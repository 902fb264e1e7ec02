"""What a thread should show, said without knowing the server: one op per post.

The renderer and the session produce these; the thread outbox turns them into REST calls.
Never holds server post ids or does I/O.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class PutPost:
    """The post known locally as `key` should now show `text` (created if it is new).

    Keys are stable strings unique within a thread ("t3.0", "t3.done", "perm.<id>"); the
    order in which keys are first put is the order in which their posts appear.
    """

    key: str
    text: str
