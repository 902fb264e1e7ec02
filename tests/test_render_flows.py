"""A turn split by a permission request: the answer before the request is one post, for
good. Found with the ACP e2e test: the end of the turn put that post's text again after
the outbox had forgotten it (a final post is forgotten once shown), which made a second,
duplicate post at the bottom of the thread (Claude Code did the same)."""

from __future__ import annotations

from supervisor.core.agent_events import TextBlock, TextDelta, ToolCall, ToolOutcome, TurnEnded
from supervisor.core.outbox import Create, Edit, Outbox
from supervisor.core.render import TurnRenderer
from supervisor.core.thread_ops import PutPost


class Server:
    """Carries out an outbox's calls at once; counts the posts it made."""

    def __init__(self) -> None:
        self.outbox = Outbox(edit_interval=0.0, id_prefix="test")
        self.posts: dict[str, str] = {}

    def put(self, ops: list[PutPost], now: float = 0.0) -> None:
        for op in ops:
            self.outbox.put(op, now)
        while isinstance(action := self.outbox.next_action(now), Create | Edit):
            post_id = action.post_id if isinstance(action, Edit) else f"p{len(self.posts)}"
            self.posts[post_id] = action.text
            self.outbox.done(action, post_id, now)


def test_the_words_before_a_permission_request_are_never_posted_twice() -> None:
    server = Server()
    renderer = TurnRenderer()
    renderer.start_turn(0.0)
    server.put(renderer.feed(TextDelta("I will run a command."), 0.0))
    server.put(renderer.feed(TextBlock("I will run a command."), 0.0))
    server.put(renderer.feed(ToolCall("t1", "Bash", {"command": "touch x"}), 0.0))
    server.put(renderer.break_flow())  # the request's own post comes next
    server.put([PutPost.urgent("perm.1", "🔐 Permission needed")])
    server.put(renderer.feed(ToolOutcome("t1", is_error=True, text="denied"), 1.0))
    server.put(renderer.feed(TextBlock("It was denied."), 1.0))
    server.put(renderer.feed(TurnEnded(total_cost_usd=0.01), 1.0))
    texts = list(server.posts.values())
    assert len([t for t in texts if t.startswith("I will run a command.")]) == 1
    assert len(texts) == 3
    assert "❌" in texts[0] and "denied" in texts[0]  # the tool line above the request, corrected
