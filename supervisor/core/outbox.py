"""The thread outbox: from what a thread should show to the REST calls that make it so.

Owns, for one thread, the posts we made or mean to make: the text each should show, what
the server last accepted, and when each was last written. It decides the next call.

Rules it enforces:
- Posts are created in the order their keys were first put; a later post is never
  created before an earlier one (edits of older posts may go first: oldest key first).
- One call at a time: between `next_action` and `done`/`failed`/`dropped` nothing else is
  due, so calls reach the server in the order they were decided.
- An edit is sent only when the wanted text differs from what the server has. A
  deferrable text (a streaming answer) is edited at most once per post per
  `edit_interval` (counted from the post's last create or edit, failed ones included), and
  not before `room_at` (the request budget is tight): the puts in between coalesce into
  one call with the latest text. An urgent text (a final one, a request, the first words
  of an answer) goes at once, whatever the interval and the budget's pressure.
- A create carries an idempotency key that is stable for that post and no longer than the
  front end honours (`max_key_chars`), so a create retried after a timeout is deduplicated
  by the server instead of making a second post (which then shows the first attempt's
  text: if the text changed in between, an edit follows).
- Memory stays flat: a post whose final text is on the server is forgotten; the last
  `FINISHED_KEPT` of those keep their id and text, so that putting one again (a turn's end
  re-puts what it showed above a permission request) never makes a second post.

Must never do I/O, sleep or read a clock: time comes in as `now`, and the caller makes the
calls, backs off after failures, and waits as told.
"""

from __future__ import annotations

import math
import uuid
from collections import OrderedDict, deque

import attrs

from supervisor.core.markdown import NO_LIMIT
from supervisor.core.thread_ops import PutPost

KEY_INDEX_CHARS = 12  # room a key keeps after its prefix, for ":" and the post's index
FINISHED_KEPT = 256  # forgotten posts whose id and final text are still known


@attrs.frozen
class Create:
    key: str
    text: str
    idempotency_key: str
    urgent: bool = attrs.field(default=False, kw_only=True)
    reply_to: str = attrs.field(default="", kw_only=True)  # PutPost.reply_to
    # The post's last text (see PutPost.final): a link that shows growing posts its own
    # way (drafts) makes this one a real message. Not part of what the call is.
    final: bool = attrs.field(default=False, kw_only=True, eq=False)


@attrs.frozen
class Edit:
    key: str
    post_id: str
    text: str
    urgent: bool = attrs.field(default=False, kw_only=True)
    final: bool = attrs.field(default=False, kw_only=True, eq=False)  # as Create's


@attrs.frozen
class Wait:
    """Nothing is due before `until` (unless something new is put)."""

    until: float


@attrs.frozen
class Idle:
    """Nothing to do until something new is put (or the call in flight is over)."""


Call = Create | Edit
Action = Create | Edit | Wait | Idle


@attrs.define
class _Post:
    index: int  # the order in which its key was first put
    wanted: str
    idempotency_key: str
    post_id: str | None = None  # None until created
    sent: str | None = None  # the text the server last accepted
    last_call: float = -math.inf  # when its last create or edit was sent
    tried: set[str] = attrs.Factory(set)  # texts of failed creates that may have reached it
    dropped: bool = False  # a call failed for good: leave this post alone
    wanted_seq: int = 0  # the put that set `wanted`
    sent_seq: int = 0  # the put whose text the server last accepted
    born_seq: int = 0  # the put that first named this post
    calling_seq: int = 0  # the put whose text the call in flight carries
    urgent_seq: int = 0  # the last put that was not deferrable
    final: bool = False  # the last put was the post's final text
    reply_to: str = ""  # the person's post it answers (PutPost.reply_to)


@attrs.define
class Outbox:
    """One thread's posts. Invariants: `_posts` is in the order keys were first put (index
    order) and holds every post not yet forgotten; `_dirty` holds exactly the keys of posts,
    not dropped, whose wanted text is not on the server; `_uncreated` holds, in order, the
    keys of posts neither created nor dropped; at most one call is `_in_flight`."""

    edit_interval: float
    # Unique per outbox, across threads and restarts: a server may dedupe creates on keys
    # globally for a while, so a reused key would swallow a new post. The
    # random default is the one thing here not driven by the caller; tests pass their own.
    id_prefix: str = attrs.field(kw_only=True, factory=lambda: uuid.uuid4().hex[:16])
    # The longest key the front end honours (`ChatLink.max_idempotency_key_chars`).
    max_key_chars: int = attrs.field(kw_only=True, default=NO_LIMIT)
    _posts: dict[str, _Post] = attrs.Factory(dict)
    _uncreated: deque[str] = attrs.Factory(deque)
    _dirty: set[str] = attrs.Factory(set)
    _in_flight: tuple[Call, float] | None = None
    _seq: int = 0  # counts puts
    _count: int = 0  # counts posts ever put: the next post's index
    # key -> (post id, final text) of recently forgotten posts, oldest first
    _finished: OrderedDict[str, tuple[str, str]] = attrs.Factory(OrderedDict)

    def __attrs_post_init__(self) -> None:
        if len(self.id_prefix) > self.max_key_chars - KEY_INDEX_CHARS:
            raise ValueError(f"id_prefix is too long for keys of {self.max_key_chars} characters: {self.id_prefix!r}")

    def __len__(self) -> int:
        """Posts it still tracks (forgotten ones are not counted)."""
        return len(self._posts)

    def put(self, op: PutPost, now: float) -> None:
        """The post `op.key` should show `op.text`. (`now` is unused: wanting is timeless.)"""
        self._seq += 1
        post = self._posts.get(op.key)
        if post is None and op.key in self._finished:
            post_id, text = self._finished[op.key]
            if op.text == text:
                return  # the server shows it already
            # Back from the forgotten: an edit of the post it was, never a second post.
            del self._finished[op.key]
            index, self._count = self._count, self._count + 1
            post = _Post(index, text, "", post_id=post_id, sent=text, born_seq=self._seq)
            self._posts[op.key] = post
        if post is None:
            index, self._count = self._count, self._count + 1
            post = _Post(index, op.text, f"{self.id_prefix}:{index}", born_seq=self._seq, reply_to=op.reply_to)
            self._posts[op.key] = post
            self._uncreated.append(op.key)
        post.wanted = op.text
        post.wanted_seq = self._seq
        post.final = op.final
        if not op.deferrable or op.final:
            post.urgent_seq = self._seq
        self._mark(op.key, post)

    def next_action(self, now: float, room_at: float = -math.inf) -> Action:
        """The call to make now, or how long to wait. Idle while a call is in flight.
        `room_at`: when the request budget has room for deferrable calls again."""
        if self._in_flight is not None or not self._dirty:
            return Idle()
        best: tuple[int, str] | None = None
        soonest = math.inf
        next_create = self._uncreated[0] if self._uncreated else None
        for key in self._dirty:
            post = self._posts[key]
            if post.post_id is None and key != next_create:
                continue  # waits for the posts before it to be created
            if post.post_id is None and self._behind(post):
                continue  # waits for the posts before it to show what they showed at its birth
            due = self._due(post, now, room_at)
            if due <= now and (best is None or post.index < best[0]):
                best = (post.index, key)
            soonest = min(soonest, due)
        if best is None:
            return Wait(soonest)
        call = self._call(best[1])
        self._in_flight = (call, now)
        return call

    def _due(self, post: _Post, now: float, room_at: float) -> float:
        if post.urgent_seq > post.sent_seq:
            return now
        if post.post_id is None:
            return max(now, room_at)
        return max(post.last_call + self.edit_interval, room_at)

    def _behind(self, new: _Post) -> bool:
        """An earlier post does not yet show the text it had when `new` was first put: a
        new post (a notice, the rest of an answer) never overtakes the words before it.
        The wait is at most one edit interval, and later puts do not prolong it."""
        for key in self._dirty:
            post = self._posts[key]
            if post.index < new.index and post.sent_seq < min(post.wanted_seq, new.born_seq):
                return True
        return False

    def _call(self, key: str) -> Call:
        post = self._posts[key]
        post.calling_seq = post.wanted_seq
        urgent = post.urgent_seq > post.sent_seq
        if post.post_id is None:
            return Create(key, post.wanted, post.idempotency_key, urgent=urgent, final=post.final, reply_to=post.reply_to)
        return Edit(key, post.post_id, post.wanted, urgent=urgent, final=post.final)

    def done(self, action: Call, post_id: str | None, now: float) -> None:
        """The call succeeded; a create reports the new post's id (a create reported
        without one gives the post up, as `dropped` does: there is nothing to edit)."""
        if isinstance(action, Create) and not post_id:
            self.dropped(action, now)
            return
        post, sent_at = self._finish(action)
        post.sent, post.last_call = action.text, sent_at
        if isinstance(action, Create):
            post.post_id = post_id
            self._created(action.key)
            if post.tried - {action.text}:
                # An earlier attempt may have made the post (the server then answers with
                # it, deduplicated) with an older text: edit it to be sure.
                post.sent = None
        if post.sent is not None:
            post.sent_seq = post.calling_seq
        self._mark(action.key, post)

    def failed(self, action: Call, now: float) -> None:
        """The call failed and may succeed later: it stays due (the caller backs off)."""
        post, sent_at = self._finish(action)
        post.last_call = sent_at  # it may have reached the server: space the retry too
        if isinstance(action, Create):
            post.tried.add(action.text)
        else:
            post.sent = None  # the post shows the old text or this one: send again either way
        self._mark(action.key, post)

    def dropped(self, action: Call, now: float) -> None:
        """The call failed for good (the post was deleted, the text refused): give up on
        this post, so one bad post never blocks the thread. (A given-up post stays known, so
        that later puts of its key do not make a new post; such posts are rare.)"""
        post, _ = self._finish(action)
        post.dropped = True
        self._dirty.discard(action.key)
        self._created(action.key)

    def post_id(self, key: str) -> str | None:
        post = self._posts.get(key)
        return post.post_id if post else None

    def shows(self, key: str) -> bool:
        """The server shows what `key` should show (or the post was given up)."""
        post = self._posts.get(key)
        return post is None or post.dropped or (post.post_id is not None and post.sent == post.wanted)

    def idempotency_key(self, key: str) -> str:
        return self._posts[key].idempotency_key

    def is_settled(self) -> bool:
        """Everything put is on the server (or given up)."""
        return self._in_flight is None and not self._dirty

    def _finish(self, action: Call) -> tuple[_Post, float]:
        if self._in_flight is None or self._in_flight[0] != action:
            raise RuntimeError(f"{action} is not the call in flight")
        sent_at = self._in_flight[1]
        self._in_flight = None
        return self._posts[action.key], sent_at

    def _mark(self, key: str, post: _Post) -> None:
        if post.wanted == post.sent:
            post.sent_seq = post.wanted_seq  # the server already shows what is wanted
        if post.dropped or post.wanted == post.sent:
            self._dirty.discard(key)
            if post.final and not post.dropped and not self._calling(key):
                del self._posts[key]  # its last words are on the server: nothing left to do
                if post.post_id is not None:
                    self._finished[key] = (post.post_id, post.wanted)
                    if len(self._finished) > FINISHED_KEPT:
                        self._finished.popitem(last=False)
        else:
            self._dirty.add(key)

    def _calling(self, key: str) -> bool:
        return self._in_flight is not None and self._in_flight[0].key == key

    def _created(self, key: str) -> None:
        """`key` was created or given up: it no longer holds back the posts after it."""
        if self._uncreated and self._uncreated[0] == key:
            self._uncreated.popleft()
        else:  # not expected: creates go in order; keep the invariant anyway
            with_key = [k for k in self._uncreated if k != key]
            self._uncreated = deque(with_key)
