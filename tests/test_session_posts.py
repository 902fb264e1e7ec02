"""What a session puts in its thread, driven in memory (issue 13: fewer requests per answer,
a thread that reads in the order things happened; issue 9 defect 5: flat memory)."""

from __future__ import annotations

from supervisor.core.agent_events import (
    AgentEvent,
    PermissionAsked,
    SendPrompt,
    TextBlock,
    TextDelta,
    ToolCall,
    ToolOutcome,
    TurnEnded,
)
from supervisor.core.outbox import Create, Edit, Outbox
from supervisor.core.session import SessionCore
from supervisor.core.session_effects import (
    Effect,
    FetchFiles,
    QueuedPrompt,
    SessionSettings,
    Show,
    ToAgent,
)
from supervisor.core.state import SessionRecord
from supervisor.core.thread_ops import PutPost


def core() -> SessionCore:
    record = SessionRecord(id="s1", name="alpha", channel_id="dm", user_id="alice", cwd="/tmp", root_id="root")
    session = SessionCore(record, SessionSettings(username="alice"))
    session.start(0.0, launch_now=True)
    session.agent_ready(123, 0.0)
    return session


def shown(effects: list[Effect]) -> list[PutPost]:
    return [effect.op for effect in effects if isinstance(effect, Show)]


def thread_of(ops: list[PutPost]) -> list[str]:
    """The thread as the person reads it: posts in the order first put, latest text each."""
    texts: dict[str, str] = {}
    for op in ops:
        texts[op.key] = op.text
    return list(texts.values())


def prompt(n: int, text: str = "") -> QueuedPrompt:
    return QueuedPrompt(post_id=f"p{n}", channel_id="dm", text=text or f"prompt {n}")


def test_the_completion_line_is_the_footer_of_the_answer() -> None:
    session = core()
    session.prompt(prompt(1), 0.0)
    ops = shown(session.agent_event(TextDelta("Hello"), 0.1))
    ops += shown(session.agent_event(TextBlock("Hello, world."), 0.2))
    ops += shown(session.agent_event(TurnEnded(total_cost_usd=0.01), 0.3))
    thread = thread_of(ops)
    assert len(thread) == 1  # one post: the answer, with the completion line below it
    assert thread[0].startswith("Hello, world.\n\n✅ Done · ")
    assert ops[-1].final


QUEUED_1 = "⏳ 1 more prompt queued"


def calls(batches: list[list[Effect]]) -> list[Create | Edit]:
    """The REST calls a thread's outbox makes when each batch of effects (what one read
    from the agent gives) is applied and the poster then catches up; edits are due at once
    between batches (each batch comes a whole edit interval after the last)."""
    outbox = Outbox(edit_interval=1.0, id_prefix="test")
    made: list[Create | Edit] = []
    for step, effects in enumerate(batches):
        now = 10.0 * step
        for op in shown(effects):
            outbox.put(op, now)
        while isinstance(action := outbox.next_action(now), Create | Edit):
            made.append(action)
            outbox.done(action, f"id{len(made)}", now)
    return made


def test_a_queued_prompt_is_said_in_the_running_answer_and_gone_from_its_final_text() -> None:
    session = core()
    session.prompt(prompt(1), 0.0)
    first = session.agent_event(TextDelta("Working on it"), 0.1)
    queued = session.prompt(prompt(2), 0.2)
    assert all(isinstance(e, Show) for e in queued)  # no mark of its own: the answer says it
    assert thread_of(shown(first + queued)) == [f"Working on it\n\n{QUEUED_1}: it runs when this turn ends."]
    more = session.prompt(prompt(3), 0.3)
    assert thread_of(shown(more)) == ["Working on it\n\n⏳ 2 more prompts queued: they run in order after this turn."]
    ended = session.agent_event(TurnEnded(total_cost_usd=0.01), 0.4)
    final = thread_of(shown(first + queued + more + ended))
    assert final[0].startswith("Working on it\n\n✅ Done")  # the next turn is running now
    assert QUEUED_1 not in final[0]


def test_prompts_held_for_their_files_are_counted_as_queued_in_the_answer_and_the_status() -> None:
    """A prompt whose attachments are still being saved (and any written after it) waits
    before the queue: the running answer and `!status` count it all the same, and it
    takes its own place in the queue once its files are saved, with nothing said twice."""
    session = core()
    session.prompt(prompt(1), 0.0)
    first = session.agent_event(TextDelta("Working on it"), 0.1)
    held = session.prompt_in(prompt(2), ["f2"], 0.2)
    assert FetchFiles(prompt(2), ("f2",)) in held
    line = f"Working on it\n\n{QUEUED_1}: it runs when this turn ends."
    assert thread_of(shown(first + held)) == [line]
    assert "- queued prompts: 1" in session.status_text(0.2)
    two = session.prompt_in(prompt(3), [], 0.2)  # no files, but written after one with them
    assert thread_of(shown(two)) == ["Working on it\n\n⏳ 2 more prompts queued: they run in order after this turn."]
    saved = session.files_saved(prompt(2, "prompt 2 with its file"), 0.3)
    assert [p.post_id for p in session.queue] == ["p2", "p3"]
    assert session.queue[0].text == "prompt 2 with its file"
    assert all(op.text.endswith("⏳ 2 more prompts queued: they run in order after this turn.") for op in shown(saved))
    assert "- queued prompts: 2" in session.status_text(0.3)
    ended = session.agent_event(TurnEnded(total_cost_usd=0.01), 0.5)
    assert "queued" not in thread_of(shown(first + held + two + saved + ended))[0]


def test_prompts_with_files_are_saved_one_at_a_time_and_reach_the_agent_in_the_order_written() -> None:
    session = core()
    first = session.prompt_in(prompt(1), ["f1"], 0.0)
    assert first == [FetchFiles(prompt(1), ("f1",))] and "- queued prompts: 1" in session.status_text(0.0)
    assert session.prompt_in(prompt(2), ["f2"], 0.1) == []  # waits behind the saving under way
    started = session.files_saved(prompt(1, "one"), 0.2)
    assert [e.command.text for e in started if isinstance(e, ToAgent) and isinstance(e.command, SendPrompt)] == ["one"]
    assert started[-1] == FetchFiles(prompt(2), ("f2",))  # the next one's saving starts now
    session.files_saved(prompt(2, "two"), 0.3)
    assert [p.text for p in session.queue] == ["two"]  # behind the running turn
    assert "- queued prompts: 1" in session.status_text(0.3)


def test_the_queue_line_waits_for_the_turns_first_words_and_never_takes_a_post_of_its_own() -> None:
    session = core()
    session.prompt(prompt(1), 0.0)
    assert shown(session.prompt(prompt(2), 0.1)) == []  # nothing said yet: nothing to put it under
    ops = shown(session.agent_event(TextDelta("Hi"), 0.2))
    assert thread_of(ops) == [f"Hi\n\n{QUEUED_1}: it runs when this turn ends."]
    assert ops[0].urgent  # the first words (and the line) show at once


def test_a_queued_prompt_costs_at_most_one_request_and_a_short_answer_one_create() -> None:
    def answer(queue_behind: int) -> list[Create | Edit]:
        """A streaming answer that goes quiet while `queue_behind` prompts come, then ends."""
        session = core()
        session.prompt(prompt(1), 0.0)
        batches = [session.agent_event(TextDelta("Let me look."), 0.1)]
        batches += [session.prompt(prompt(2 + n), 0.2 + n / 10) for n in range(queue_behind)]
        return calls([*batches, session.agent_event(TurnEnded(total_cost_usd=0.01), 0.9)])

    alone = answer(0)
    assert [type(c) for c in alone] == [Create, Edit]  # its words, then the completion footer
    # The worst case, each queued prompt coming while the answer is quiet: one edit each.
    assert len(answer(1)) == len(alone) + 1
    assert len(answer(2)) == len(alone) + 2

    # A turn that answers at once with prompts behind it: one create, with no line.
    session = core()
    session.prompt(prompt(1), 0.0)
    session.prompt(prompt(2), 0.1)
    session.prompt(prompt(3), 0.1)
    session.agent_event(TurnEnded(total_cost_usd=0.01), 0.2)  # prompt 2 runs, 3 waits
    at_once = session.agent_event(TextBlock("Done already."), 0.3) + session.agent_event(TurnEnded(total_cost_usd=0.02), 0.3)
    made = calls([at_once])
    assert len(made) == 1 and isinstance(made[0], Create)
    assert "queued" not in made[0].text


def test_text_after_a_permission_request_continues_below_it() -> None:
    """Seen with the real CLI: the tool's result showed above the question that allowed it."""
    session = core()
    session.prompt(prompt(1), 0.0)
    ops = shown(session.agent_event(TextBlock("I will list the files."), 0.1))
    ops += shown(session.agent_event(ToolCall("t1", "Bash", {"command": "ls"}), 0.1))
    asked = session.agent_event(PermissionAsked("r1", "Bash", {"command": "ls"}, tool_use_id="t1"), 0.2)
    ops += shown(asked)
    perm_key = next(op.key for op in shown(asked) if op.key.startswith("perm."))
    session.post_created(perm_key, "post-perm")
    ops += shown(session.choose("allow_once", "post-perm", 1.0))
    ops += shown(session.agent_event(TextBlock("Tool finished. Result was: a b c"), 1.5))
    ops += shown(session.agent_event(TurnEnded(total_cost_usd=0.01), 1.6))
    keys = list(dict.fromkeys(op.key for op in ops))
    thread = thread_of(ops)
    perm = keys.index(perm_key)
    assert "I will list the files." in thread[perm - 1] and "Tool finished" not in thread[perm - 1]
    assert "Allowed" in thread[perm] or "allowed" in thread[perm]
    assert thread[perm + 1].startswith("Tool finished. Result was: a b c\n\n✅ Done")
    assert len(thread) == 3
    # The earlier text went out as urgent (before the request), and nothing is left pending.
    before = [op for op in shown(asked) if not op.key.startswith("perm.")]
    assert before and all(not op.deferrable for op in before)
    assert session.permission_posts == {}  # settled: its post is no longer remembered


def test_a_failed_tool_above_a_request_is_still_marked() -> None:
    session = core()
    session.prompt(prompt(1), 0.0)
    session.agent_event(ToolCall("t1", "Bash", {"command": "rm x"}), 0.1)
    session.agent_event(PermissionAsked("r1", "Bash", {"command": "rm x"}, tool_use_id="t1"), 0.2)
    ops = shown(session.agent_event(ToolOutcome("t1", is_error=True, text="denied"), 0.3))
    assert [op.key for op in ops] == ["t1.0"] and ops[0].text.startswith("❌")


def test_a_short_answer_from_one_batch_of_events_is_one_create() -> None:
    session = core()
    session.prompt(prompt(1), 0.0)
    outbox = Outbox(0.7, id_prefix="test")
    batch: list[AgentEvent] = [TextDelta("echo"), TextBlock("echo #1"), TurnEnded(total_cost_usd=0.01)]
    for event in batch:
        for op in shown(session.agent_event(event, 0.1)):
            outbox.put(op, 0.1)
    calls: list[Create | Edit] = []
    while isinstance(call := outbox.next_action(0.1), Create | Edit):
        calls.append(call)
        outbox.done(call, "p0", 0.1)
    assert len(calls) == 1 and isinstance(calls[0], Create)
    assert calls[0].text.startswith("echo #1\n\n✅ Done")
    assert len(outbox) == 0  # and once shown, the outbox forgets it


def test_memory_of_a_long_running_session_stays_flat() -> None:
    """Issue 9, defect 5: permission posts are forgotten once settled."""
    session = core()
    for n in range(2_000):
        session.prompt(prompt(n), float(n))
        asked = session.agent_event(PermissionAsked(f"r{n}", "Bash", {"command": "ls"}), n + 0.1)
        key = next(op.key for op in shown(asked) if op.key.startswith("perm."))
        session.post_created(key, f"post-{n}")
        session.choose("allow_once", f"post-{n}", n + 0.2)
        session.agent_event(TurnEnded(total_cost_usd=0.01 * (n + 1)), n + 0.3)
    assert session.permission_posts == {} and session.pending == {}
