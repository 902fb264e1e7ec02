"""The router: given one chat event and what we know, decide what it means.

Rules it enforces (the property tests check every one of them):
- Only posts and choices of `allowed_users` act; the bot's own never do.
- Only each allowed person's main place counts (their direct-message channel with the
  bot, their private chat, the web page), and threads in it.
- A post reaches a session only when its thread root is that session's root, in that
  session's channel; a choice only when the post it is made on belongs to that thread.
- Edits and deletions never act (front ends hand over no system posts).

Pure: no I/O, no clock. The trio shell applies the decision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs

from supervisor.core import commands
from supervisor.core.events import ChatEvent, Choice, ChoiceMade, Hello, Post, Posted, TurnedTo


@attrs.frozen
class SessionRef:
    """What the router knows of a session: where its thread is, and whether it still runs."""

    root_id: str
    channel_id: str
    ended: bool = False


@attrs.frozen
class RouterView:
    bot_user_id: str
    allowed_user_ids: frozenset[str]
    # root post id -> session; only sessions of allowed users' DMs are listed
    sessions: Mapping[str, SessionRef]
    # which thread root a post id belongs to (posts we saw or made); None if unknown
    thread_of: Callable[[str], str | None] = lambda _post_id: None
    # each allowed person's main place (a DM with the bot, a private chat, the web page);
    # None: any place (tests of the other rules)
    places: frozenset[str] | None = None


# --- decisions -------------------------------------------------------------------


@attrs.frozen
class Ignore:
    reason: str


@attrs.frozen
class RunMainCommand:
    post: Post
    command: commands.MainCommand | commands.BadCommand


@attrs.frozen
class Guide:
    """A root post in the main DM that is not a command: explain how to use the bot."""

    post: Post


@attrs.frozen
class Prompt:
    session: SessionRef
    post: Post


@attrs.frozen
class RunThreadCommand:
    session: SessionRef
    post: Post
    command: commands.ThreadCommand | commands.BadCommand


@attrs.frozen
class Choose:
    session: SessionRef
    choice: Choice


@attrs.frozen
class AnswerEnded:
    """A post in the thread of a session that has ended."""

    session: SessionRef
    post: Post


@attrs.frozen
class Wake:
    """The person turned to a live session's thread: its agent should run."""

    session: SessionRef


@attrs.frozen
class Resync:
    """The chat connection is new: events may have been missed, catch up over REST."""

    connection_id: str


Decision = (
    Ignore | RunMainCommand | Guide | Prompt | RunThreadCommand | Choose | AnswerEnded | Resync | Wake
)


def route(event: ChatEvent, view: RouterView) -> Decision:
    if isinstance(event, Hello):
        return Resync(event.connection_id)
    if isinstance(event, Posted):
        return route_post(event.post, view)
    if isinstance(event, ChoiceMade):
        return route_choice(event.choice, view)
    if isinstance(event, TurnedTo):
        return route_turn(event, view)
    return Ignore(f"{type(event).__name__} does not act")


def route_post(post: Post, view: RouterView) -> Decision:
    """Route one new post. Also used for posts fetched during catch-up."""
    if post.user_id == view.bot_user_id:
        return Ignore("the bot's own post")
    if post.user_id not in view.allowed_user_ids:
        return Ignore("not an allowed user")
    if view.places is not None and post.channel_id not in view.places:
        return Ignore("not a person's main place")
    if not post.root_id:
        command = commands.parse_main_command(post.message)
        return Guide(post) if command is None else RunMainCommand(post, command)
    session = view.sessions.get(post.root_id)
    if session is None:
        # A reply under one of our own non-session posts (a command's answer): the person
        # expects a response, so guide them rather than stay silent.
        return Guide(post)
    if session.channel_id != post.channel_id:
        return Ignore("thread root lives in another channel")
    if session.ended:
        return AnswerEnded(session, post)
    thread_command = commands.parse_thread_command(post.message)
    if thread_command is None:
        return Prompt(session, post)
    return RunThreadCommand(session, post, thread_command)


def route_choice(choice: Choice, view: RouterView) -> Decision:
    if choice.user_id == view.bot_user_id:
        return Ignore("the bot's own choice")
    if choice.user_id not in view.allowed_user_ids:
        return Ignore("not an allowed user")
    root = choice.post_id if choice.post_id in view.sessions else view.thread_of(choice.post_id)
    session = view.sessions.get(root) if root else None
    if session is None:
        return Ignore("choice outside any session thread")
    if choice.channel_id and choice.channel_id != session.channel_id:
        return Ignore("choice in another channel")
    if session.ended:
        return Ignore("the session has ended")
    return Choose(session, choice)


def acts_after_catch_up(choice: Choice, *, asks: bool) -> bool:
    """Whether a choice a catch-up found on a post still offering one acts now: on a
    request that asks (a permission), any does. A 🛑 acts on any post of a thread, whenever
    it was given: on one that asks nothing now (a rerun offer), a 🛑 given long ago would
    stop today's turn, so there it does not."""
    return asks or choice.kind != "stop"


def route_turn(turn: TurnedTo, view: RouterView) -> Decision:
    """Someone turned to a thread: only an allowed person, in their place, to a live session."""
    if turn.user_id == view.bot_user_id or turn.user_id not in view.allowed_user_ids:
        return Ignore("not an allowed user")
    if view.places is not None and turn.channel_id not in view.places:
        return Ignore("not a person's main place")
    session = view.sessions.get(turn.root_id)
    if session is None or session.channel_id != turn.channel_id:
        return Ignore("no session has that thread")
    if session.ended:
        return Ignore("the session has ended")
    return Wake(session)
