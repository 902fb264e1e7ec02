"""A session's permission requests while they wait for a person: asked, answered, lapsed.

`Approvals` is the part of the turn loop (`core.turn_loop`) that keeps the requests its
agent waits on: the post of each, what a person's answer to one means for the agent, the
approval clock (one reminder that mentions the person, then a denial), and the note kept
with the record that says a request lapsed, should the supervisor stop before it is
answered. The turn loop owns it and keeps the rules that span the turn: the session's
state (AWAITING_APPROVAL while a request waits), the stall clock, the interrupt 🛑 asks for.

It must never change the session's state, read a clock (`now` is passed in) or change the
record in place: a change to the record is a `SaveRecord` it returns, which the core adopts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import attrs

from supervisor.core.agent_events import (
    AgentCommand,
    AllowTool,
    AlwaysAllow,
    DenyTool,
    PermissionAsked,
)
from supervisor.core.permissions import PERMISSION_CHOICES, Answer, permission_text
from supervisor.core.session_effects import (
    EditPost,
    Effect,
    OfferChoices,
    SaveRecord,
    SessionSettings,
    SettleChoices,
    Show,
    ToAgent,
)
from supervisor.core.state import SessionRecord
from supervisor.core.thread_ops import PutPost
from supervisor.core.thread_texts import duration


@attrs.define
class PendingPermission:
    request: PermissionAsked
    key: str  # its post's key
    asked_at: float
    reminded: bool = False
    post_id: str = ""  # its post, once created


@attrs.frozen
class Verdict:
    """What a person's answer to a request means: how it reads, and what the agent is told."""

    outcome: str
    command: AgentCommand
    always: AlwaysAllow | None = None  # allowed for the session: kept with the record


@attrs.define
class Approvals:
    """Invariants: `posts` names only the posts of requests in `pending` (post id -> request
    id); a request leaves `pending` once, with the post that says how it ended."""

    settings: SessionSettings
    note: Callable[[str], Show]  # a notice at the thread's end (the core numbers them)
    pending: dict[str, PendingPermission] = attrs.field(factory=dict)
    posts: dict[str, str] = attrs.field(factory=dict)
    # Each request's post has a key of its own: an agent's request ids need not be unique
    # past its process (an ACP agent numbers its JSON-RPC requests from 0 in each), and
    # a reused key would edit an earlier request's post instead of making one.
    _asked: itertools.count[int] = attrs.field(factory=itertools.count)

    def ask(self, request: PermissionAsked, now: float) -> list[Effect]:
        key = f"perm.{next(self._asked)}"
        self.pending[request.request_id] = PendingPermission(request, key, asked_at=now)
        # What the agent offers: "always" only where it has a meaning for this request.
        offered = tuple(c for c in PERMISSION_CHOICES if c != "allow_always" or request.always is not None)
        return [
            Show(PutPost.urgent(key, permission_text(request, "pending", legend=self.settings.legend(offered), max_chars=self.settings.max_message_chars))),
            OfferChoices(key, offered),
        ]

    def settle(
        self, request_id: str, outcome: str, command: AgentCommand | None, record: SessionRecord, by: str = ""
    ) -> list[Effect]:
        """The request ends (nothing if it already has): its post says how."""
        pending = self.pending.pop(request_id, None)
        if pending is None:
            return []
        effects: list[Effect] = [] if command is None else [ToAgent(command)]
        if pending.post_id:
            effects.append(SettleChoices(pending.post_id))
        else:  # its post is not made yet: once made, it offers nothing
            effects.append(OfferChoices(pending.key, ()))
        if pending.post_id in record.lapsed_requests:
            lapsed = {p: t for p, t in record.lapsed_requests.items() if p != pending.post_id}
            effects.append(SaveRecord(attrs.evolve(record, lapsed_requests=lapsed)))
        text = permission_text(pending.request, outcome, by, max_chars=self.settings.max_message_chars)
        # Settled for good: its post no longer needs to be known (memory stays flat).
        for post_id in [p for p, r in self.posts.items() if r == request_id]:
            del self.posts[post_id]
        return [*effects, Show(PutPost.last(pending.key, text))]

    def verdict(self, request_id: str, answer: Answer) -> Verdict | None:
        """A person's answer (not 🛑) to a pending request; None where it means nothing."""
        pending = self.pending.get(request_id)
        if pending is None:
            return None
        request = pending.request
        if answer is Answer.ALLOW:
            return Verdict("allowed", AllowTool(request_id, request.input))
        if answer is Answer.ALLOW_SESSION:
            if request.always is None:
                return None  # the agent offers no "always" for this request
            always = request.always
            return Verdict("allowed for session", AllowTool(request_id, request.input, always.updates, always=True), always)
        return Verdict("denied", DenyTool(request_id, "The user denied this tool call."))

    def due(self, request_id: str, now: float) -> DenyTool | Show | None:
        """The approval clock: the denial once the time is up, the reminder halfway."""
        pending = self.pending[request_id]
        timeout = self.settings.approval_timeout_s
        if now >= pending.asked_at + timeout:
            return DenyTool(request_id, f"No answer within {duration(timeout)}: denied.")
        if not pending.reminded and now >= pending.asked_at + timeout / 2:
            pending.reminded = True
            left = duration(pending.asked_at + timeout - now)
            mention = f"@{self.settings.username} " if self.settings.username else ""
            return self.note(f"{mention}a permission request is waiting for you; it is denied in {left}.")
        return None

    def deadlines(self) -> list[float]:
        timeout = self.settings.approval_timeout_s
        return [p.asked_at + (timeout if p.reminded else timeout / 2) for p in self.pending.values()]

    def post_created(self, key: str, post_id: str, record: SessionRecord) -> list[Effect]:
        if not key.startswith("perm."):
            return []
        request_id, pending = next(((r, p) for r, p in self.pending.items() if p.key == key), ("", None))
        if pending is None:
            return []
        self.posts[post_id] = request_id
        pending.post_id = post_id
        # Should the supervisor stop before it is answered, the next start says it lapsed.
        # Durable at once (a person's wait is long; this write is not): the post shows
        # already, and a kill before the record is written would leave it asking for good.
        lapsed = {**record.lapsed_requests, post_id: permission_text(pending.request, "lapsed", max_chars=self.settings.max_message_chars)}
        return [SaveRecord(attrs.evolve(record, lapsed_requests=lapsed), durable=True)]


def say_lapsed(record: SessionRecord) -> list[Effect]:
    """At a start: the requests left unanswered when the supervisor stopped say they lapsed."""
    effects: list[Effect] = []
    for post_id, text in record.lapsed_requests.items():
        effects += [EditPost(post_id, text), SettleChoices(post_id)]
    if record.lapsed_requests:
        effects.append(SaveRecord(attrs.evolve(record, lapsed_requests={})))
    return effects


def remember_always(always: AlwaysAllow, record: SessionRecord) -> list[Effect]:
    """Allowed for the session: kept with the record, so a relaunched agent is told again
    (agents forget)."""
    rules = tuple(dict.fromkeys([*record.allowed_rules, *always.rules]))
    mode = always.mode or record.session_mode
    if rules == record.allowed_rules and mode == record.session_mode:
        return []
    return [SaveRecord(attrs.evolve(record, allowed_rules=rules, session_mode=mode))]
