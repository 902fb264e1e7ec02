"""`SessionCore` in memory, one case at a time: the defects of issue 9 and the timing
rules (watchdog, stall, approval clock, idle suspend) with an explicit `now` instead of a
real clock. The model test (test_session_model.py) covers the random mixes."""

from __future__ import annotations

import pytest

from supervisor.agent import AgentLaunch
from supervisor.agent.claude import ClaudeBackend
from supervisor.agent.claude.permissions import permission_asked
from supervisor.chat.mattermost import choices
from supervisor.core import commands
from supervisor.core.agent_events import (
    AllowTool,
    ConversationMissing,
    DenyTool,
    Image,
    Interrupt,
    PermissionAsked,
    PermissionCancelled,
    SendPrompt,
    TextBlock,
    TextDelta,
    ToolCall,
    ToolOutcome,
    TurnEnded,
    TurnStarted,
)
from supervisor.core.lifecycle import SessionState
from supervisor.core.permissions import permission_text
from supervisor.core.restart import RestartPolicy
from supervisor.core.session import SessionCore
from supervisor.core.session_effects import (
    EditPost,
    Effect,
    Finished,
    LaunchAgent,
    MarkHandled,
    OfferChoices,
    QueuedPrompt,
    SaveRecord,
    SendFile,
    SessionSettings,
    SettleChoices,
    Show,
    StopAgent,
    ToAgent,
    saves_a_mark_carries,
)
from supervisor.core.state import SessionRecord, State, decode, encode
from supervisor.core.turn_loop import ANSWER_KEEP_CHARS, UNHEARD_EXIT_S

CHANNEL = "chan"


def link(post_id: str) -> str:
    return f"https://chat.test/pl/{post_id}"


def make_core(record: SessionRecord | None = None, **settings: object) -> SessionCore:
    record = record or SessionRecord(id="sid", name="alpha", channel_id=CHANNEL, user_id="u", cwd="/tmp", root_id="root")
    defaults: dict[str, object] = {"username": "alice", "permalink": link, "legend": choices.legend}
    return SessionCore(record, SessionSettings(**(defaults | settings)))  # type: ignore[arg-type]


def running(core: SessionCore, now: float = 0.0) -> SessionCore:
    core.start(now, launch_now=True)
    core.agent_ready(42, now)
    return core


def prompt(post_id: str, text: str = "") -> QueuedPrompt:
    return QueuedPrompt(post_id, CHANNEL, text or f"text of {post_id}")


def texts(effects: list[Effect]) -> list[str]:
    return [e.op.text for e in effects if isinstance(e, Show)]


def sent(effects: list[Effect]) -> list[object]:
    return [e.command for e in effects if isinstance(e, ToAgent)]


def asked(request_id: str = "r1", tool: str = "Bash", command: str = "npm test") -> PermissionAsked:
    rule = {"type": "addRules", "rules": [{"toolName": tool, "ruleContent": command}], "behavior": "allow",
            "destination": "localSettings"}
    return permission_asked(request_id, tool, {"command": command}, suggestions=(rule,))


# --- defect 12a: a prompt reaches an agent at most once ------------------------------


def test_a_prompt_is_durably_handled_before_it_is_written_to_the_agent() -> None:
    core = running(make_core())
    effects = core.prompt(prompt("p1"), 1.0)
    kinds = [type(e).__name__ for e in effects]
    save = next(e for e in effects if isinstance(e, SaveRecord))
    assert "p1" in save.record.unsettled
    # the record (its save rides in the same write) and the mark come before the prompt
    assert kinds.index("SaveRecord") < kinds.index("MarkHandled") < kinds.index("ToAgent"), kinds


# --- defect 2: queued prompts end visibly at !end and when the session fails --------


def test_end_says_which_queued_prompts_were_not_run_and_which_turn_was_stopped() -> None:
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    core.prompt(prompt("p2"), 2.0)
    core.prompt(prompt("p3"), 3.0)
    effects = core.command(commands.EndSession(), "c1", CHANNEL, 4.0)
    said = "\n".join(texts(effects))
    assert f"({link('p1')})" in said and "stopped: the session ended" in said
    assert f"({link('p2')})" in said and f"({link('p3')})" in said and "Not run" in said
    handled = [e.post_id for e in effects if isinstance(e, MarkHandled)]
    assert sorted(handled) == ["c1", "p2", "p3"]  # p1 was handled when it was written
    assert isinstance(effects[-1], Finished) and not core.queue


def test_an_end_is_marked_handled_in_the_write_that_ends_its_session_not_before() -> None:
    """Marked first, a kill (or the stop's cancel) before the ended record was written left
    the session live after the restart and its `!end` handled: never done, never again."""
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    effects = core.command(commands.EndSession(), "c1", CHANNEL, 2.0)
    ended = next(i for i, e in enumerate(effects) if isinstance(e, SaveRecord) and e.record.status == "ended")
    mark = effects.index(MarkHandled(CHANNEL, "c1"))
    assert effects[ended].durable and mark == ended + 1  # the mark's write carries the record
    assert saves_a_mark_carries(effects) == {ended}
    assert core.command(commands.EndSession(), "c2", CHANNEL, 3.0) == [MarkHandled(CHANNEL, "c2")]


def test_end_says_the_prompts_held_for_their_files_were_not_run_with_the_queued_ones() -> None:
    """Prompts waiting outside the core for their attachments are in the same line as the
    queue, in the order written, and handled: not "This session has ended." each."""
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    core.prompt(prompt("p2"), 2.0)
    core.prompt_in(prompt("p3"), ["f3"], 3.0)  # its file is being saved
    core.prompt_in(prompt("p4"), [], 3.1)  # behind it
    effects = core.command(commands.EndSession(), "c1", CHANNEL, 4.0)
    said = "\n".join(texts(effects))
    assert f"[this message]({link('p2')}), [this message]({link('p3')}), [this message]({link('p4')})" in said
    assert "This session has ended." not in said
    handled = [e.post_id for e in effects if isinstance(e, MarkHandled)]
    assert sorted(handled) == ["c1", "p2", "p3", "p4"]
    assert core.files_saved(prompt("p3"), 5.0) == []  # saved too late: nothing more is said


def test_a_stop_while_only_a_prompt_waiting_for_its_files_could_run_is_for_that_prompts_turn() -> None:
    """Not "Nothing to stop": the stop waits with the prompt and ends its turn before it
    runs (a `!stop` is handled then; it would be too, were the session to end first)."""
    core = running(make_core())
    assert texts(core.prompt_in(prompt("p1"), ["f1"], 1.0)) == []
    assert core.command(commands.Stop(), "s1", CHANNEL, 1.5) == []
    assert core.choose("stop", "p1", 1.6) == []
    effects = core.files_saved(prompt("p1", "with its file"), 2.0)
    said = "\n".join(texts(effects))
    assert "Nothing to stop" not in said
    assert any(isinstance(e, ToAgent) and isinstance(e.command, Interrupt) for e in effects), effects
    assert MarkHandled(CHANNEL, "s1") in effects
    core2 = running(make_core())
    core2.prompt_in(prompt("p1"), ["f1"], 1.0)
    core2.command(commands.Stop(), "s1", CHANNEL, 1.5)
    assert MarkHandled(CHANNEL, "s1") in core2.command(commands.EndSession(), "c1", CHANNEL, 2.0)


def test_a_failing_session_says_which_queued_prompts_were_not_run() -> None:
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    core.prompt(prompt("p2"), 1.0)
    effects: list[Effect] = []
    now = 2.0
    while not any(isinstance(e, Finished) for e in effects):  # it dies again while starting
        effects = core.agent_exited(1, "boom", now)
        now += 0.1
    said = "\n".join(texts(effects))
    assert core.state is SessionState.FAILED
    assert "Not run" in said and f"({link('p2')})" in said
    assert MarkHandled(CHANNEL, "p2") in effects


# --- defect 12b/c: settled as soon as the answer shows; the notice offers a rerun -----


def test_an_answer_settles_once_its_own_posts_show_while_the_next_turn_streams() -> None:
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    core.prompt(prompt("p2"), 1.0)
    first = core.agent_event(TextDelta("answer one"), 2.0) + core.agent_event(TurnEnded(), 3.0)
    keys = {e.op.key for e in first if isinstance(e, Show)}
    streaming = core.agent_event(TextDelta("answer two, still coming"), 4.0)
    second_keys = {e.op.key for e in streaming if isinstance(e, Show)}
    assert core.record.unsettled == ("p1", "p2")
    effects = core.outbox_progress(lambda key: key in keys)  # p2's posts are still changing
    save = next(e for e in effects if isinstance(e, SaveRecord))
    assert save.record.unsettled == ("p2",) and "p1" not in save.record.prompt_texts
    assert not second_keys & keys


def test_a_restart_notices_the_cut_prompt_and_its_rerun_runs_it_once() -> None:
    record = SessionRecord(id="sid", name="alpha", channel_id=CHANNEL, user_id="u", cwd="/tmp", root_id="root",
                           has_history=True, unsettled=("p1",), prompt_texts={"p1": "build it"})
    core = make_core(decode(encode(State(sessions={"sid": record}))).sessions["sid"])
    effects = core.start(0.0, launch_now=False)
    notice = next(e.op for e in effects if isinstance(e, Show))
    assert f"({link('p1')})" in notice.text and "🔁" in notice.text
    assert OfferChoices(notice.key, ("rerun",)) in effects
    core.post_created(notice.key, "n1")
    # the offer outlives another restart
    core = make_core(decode(encode(State(sessions={"sid": core.record}))).sessions["sid"])
    core.start(0.5, launch_now=False)
    assert core.choose("allow_once", "n1", 1.0) == []  # only 🔁 means "again"
    effects = core.choose("allow_always", "n1", 1.0)
    assert any(isinstance(e, LaunchAgent) for e in effects)
    effects = core.agent_ready(42, 2.0)
    assert SendPrompt("build it") in sent(effects) and MarkHandled(CHANNEL, "n1") in effects
    assert core.choose("rerun", "n1", 3.0) == []  # a second 🔁 does not run it twice


def test_a_restart_posts_a_finished_answer_whole_that_it_kept_from_showing() -> None:
    core = running(make_core(max_message_chars=60))
    core.prompt(prompt("p1", "deploy"), 1.0)
    core.agent_event(TextBlock("Deployed: " + "all green. " * 8), 1.5)
    effects = core.agent_event(TurnEnded(), 2.0)
    save = next(e for e in effects if isinstance(e, SaveRecord))
    assert save.durable and save.record.answered == ("p1",)  # durable before its posts are put
    shown = texts(effects)
    assert len(shown) > 1 and save.record.answer_texts == {"p1": tuple(shown)}  # with them, whole
    kinds = [type(e).__name__ for e in effects]
    assert kinds.index("SaveRecord") < kinds.index("Show")
    # killed before its posts showed: the next start posts them again, below why, not a "cut"
    restarted = make_core(decode(encode(State(sessions={"sid": core.record}))).sessions["sid"])
    started = restarted.start(5.0, launch_now=False)
    said = texts(started)
    assert f"({link('p1')})" in said[0] and "cut" not in said[0] and "here it is, whole" in said[0]
    assert said[1:] == shown and not [e for e in started if isinstance(e, OfferChoices)]
    assert next(e.op.reply_to for e in started if isinstance(e, Show)) == "p1"
    settled = restarted.outbox_settled()
    record = settled[-1].record  # type: ignore[union-attr]
    assert settled and record.answered == () and record.unsettled == () and record.answer_texts == {}
    assert settled[-1].at_once  # type: ignore[union-attr]  # a kill before it is written would post it again


def test_a_restart_says_a_finished_answer_too_long_to_keep_may_be_incomplete() -> None:
    core = running(make_core())
    core.prompt(prompt("p1", "deploy"), 1.0)
    core.agent_event(TextBlock("x" * (ANSWER_KEEP_CHARS + 1)), 1.5)
    core.agent_event(TurnEnded(), 2.0)
    assert core.record.answered == ("p1",) and core.record.answer_texts == {}
    restarted = make_core(decode(encode(State(sessions={"sid": core.record}))).sessions["sid"])
    started = restarted.start(5.0, launch_now=False)
    said = "\n".join(texts(started))
    assert f"({link('p1')})" in said and "cut" not in said and "may be incomplete" in said
    # what shows of it is the front end's to say (a Telegram draft is gone): 🔁 runs it again
    assert any(isinstance(e, OfferChoices) and e.kinds == ("rerun",) for e in started)


def test_a_crash_notice_links_the_cut_prompt_and_offers_the_rerun() -> None:
    core = running(make_core())
    core.prompt(prompt("p1", "deploy"), 1.0)
    effects = core.agent_exited(1, "", 2.0)
    notice = next(e.op for e in effects if isinstance(e, Show) and link("p1") in e.op.text)
    assert "was cut" in notice.text and OfferChoices(notice.key, ("rerun",)) in effects
    assert notice.reply_to == "p1"  # where a front end cannot link it (Telegram), it quotes it


def test_an_agent_that_exits_without_a_word_on_its_prompt_leaves_it_for_the_next_agent_once() -> None:
    """Its pipe took the prompt, but it printed nothing after (it was ending as its last
    turn did): nothing of the turn happened, so the next agent runs it, not a 🔁 by hand.
    A second silent exit on the same prompt is called cut: such a prompt must not loop."""
    core = running(make_core())
    core.prompt(prompt("p1", "deploy"), 1.0)
    effects = core.agent_exited(0, "", 2.0, last_line_at=0.5)  # its last line came before the prompt
    assert not any("was cut" in t for t in texts(effects)) and "restarting it" in " ".join(texts(effects))
    assert [e for e in effects if isinstance(e, LaunchAgent)]
    effects = core.agent_ready(43, 3.0)
    assert sent(effects) == [SendPrompt("deploy")]  # its first delivery that was read
    effects = core.agent_exited(0, "", 4.0, last_line_at=2.5)
    assert any(link("p1") in t and "was cut" in t for t in texts(effects)), texts(effects)


def _restarted(core: SessionCore) -> SessionCore:
    return make_core(decode(encode(State(sessions={"sid": core.record}))).sessions["sid"])


@pytest.mark.parametrize("how", ["exited unheard", "pipe closed"])
def test_a_prompt_handed_on_that_no_agent_took_before_a_restart_runs_on_the_next_start(how: str) -> None:
    """Its agent never acted on it, and the supervisor stopped before the next agent took
    it: the next start runs it (it is handled, so nothing would fetch it again), rather
    than calling it cut and leaving the person a 🔁 to press."""
    core = running(make_core())
    core.prompt(prompt("p1", "deploy"), 1.0)
    if how == "exited unheard":
        core.agent_exited(0, "", 1.5, last_line_at=0.5)
    else:
        core.prompt_not_delivered()
    assert core.record.handed_on == ("p1",) and "p1" in core.record.unsettled
    restarted = _restarted(core)
    effects = restarted.start(5.0, launch_now=False)  # a lazy start launches for it all the same
    assert not any("p1" in t for t in texts(effects)) and [e for e in effects if isinstance(e, LaunchAgent)]
    effects = restarted.agent_ready(44, 6.0)
    assert sent(effects) == [SendPrompt("deploy")]
    sending = next(i for i, e in enumerate(effects) if isinstance(e, ToAgent))
    save = [e for e in effects[:sending] if isinstance(e, SaveRecord)][-1]  # in the mark's write
    assert save.record.handed_on == ()
    effects = restarted.agent_exited(0, "", 6.5, last_line_at=0.5)  # once more: now it is cut
    assert any(link("p1") in t and "was cut" in t for t in texts(effects)), texts(effects)
    assert any(link("p1") in t and "was cut" in t for t in texts(_restarted(restarted).start(9.0, launch_now=False)))


def test_a_prompt_handed_on_with_images_is_said_cut_by_the_next_start() -> None:
    """Its images are not kept with the record: running its text alone would be another
    prompt, so the start says its turn was cut, as before."""
    core = running(make_core())
    core.prompt(QueuedPrompt("p1", "c1", "what is this?", (Image("image/png", "aGk="),)), 1.0)
    core.agent_exited(0, "", 1.5, last_line_at=0.5)
    assert core.record.handed_on == ()
    assert any(link("p1") in t and "was cut" in t for t in texts(_restarted(core).start(5.0, launch_now=False)))


def test_an_agent_that_printed_after_its_prompt_or_was_stopped_cuts_the_turn() -> None:
    """A line after the prompt may be its first step (a tool may have run): rerunning it
    by itself could do that step twice. An interrupted turn was wanted over."""
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    assert any("was cut" in t for t in texts(core.agent_exited(1, "", 2.0, last_line_at=1.5)))
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    core.interrupt(1.2)
    assert any("was cut" in t for t in texts(core.agent_exited(1, "", 2.0, last_line_at=0.5)))


def test_an_agent_that_exits_silently_long_after_its_prompt_cuts_the_turn() -> None:
    """Silent for seconds after the prompt, it was working (an agent that lives on speaks at
    once): a tool may have run before it could say so, so the prompt is not run again."""
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    assert any("was cut" in t for t in texts(core.agent_exited(1, "", 1.0 + UNHEARD_EXIT_S + 0.1, last_line_at=0.5)))


def test_a_prompt_sent_on_to_the_next_agent_and_then_stopped_is_settled_by_its_not_run_reply() -> None:
    """It was handed (so unsettled) before its agent died on it: stopped before the next
    agent took it, the reply that it did not run settles it. Else the next start would
    call it cut and offer to run what the person stopped."""
    core = running(make_core())
    core.prompt(prompt("p1", "deploy"), 1.0)
    core.agent_exited(0, "", 1.5, last_line_at=0.5)
    effects = core.choose("stop", "p1", 1.6)  # 🛑 before the next agent is up
    assert any("stopped before it started" in t for t in texts(effects)), texts(effects)
    assert core.record.handed_on == ()  # a start before its reply shows must not run it
    cleared = next(e for e in effects if isinstance(e, SaveRecord) and e.record.handed_on == ())
    assert cleared.durable and effects.index(cleared) < next(i for i, e in enumerate(effects) if isinstance(e, Show))
    settled = core.outbox_settled()
    assert settled and "p1" not in settled[-1].record.unsettled  # type: ignore[union-attr]
    restarted = make_core(decode(encode(State(sessions={"sid": core.record}))).sessions["sid"])
    assert not any("p1" in t for t in texts(restarted.start(5.0, launch_now=False)))


def test_an_ended_session_keeps_no_answer_to_post_again() -> None:
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    core.agent_event(TurnEnded(), 2.0)
    assert core.record.answer_texts
    core.end(3.0)
    assert core.record.answer_texts == {} and core.record.status == "ended"


def test_a_turn_the_supervisors_stop_cuts_is_said_cut_with_the_rerun_by_the_next_start() -> None:
    """SIGTERM (a restart, an upgrade) interrupts a running turn. Its end is not the
    person's 🛑: the prompt stays unsettled, and the next start says the turn was cut,
    with 🔁 (not in the stop's last seconds, which a paced front end may not have). A
    queued prompt starts no turn (it is not handled: the next start fetches it again).
    With no turn running, a stop says nothing; a turn that finished anyway is answered."""
    idle = running(make_core())
    assert idle.stopping(0.5) == []
    core = running(make_core())
    core.prompt(prompt("p1", "deploy"), 1.0)
    core.prompt(prompt("p2", "then test"), 1.1)
    assert [c for c in sent(core.stopping(2.0)) if isinstance(c, Interrupt)]
    assert core.stopping(2.1) == []  # asked once
    effects = core.agent_event(TurnEnded(subtype="error_during_execution", terminal_reason="aborted_streaming"), 3.0)
    assert not [e for e in effects if isinstance(e, MarkHandled)] and not sent(effects)  # p2 waits
    assert core.record.answered == () and core.record.unsettled == ("p1",)
    assert core.outbox_progress(lambda key: True) == []  # its posts showing settle nothing
    restarted = make_core(decode(encode(State(sessions={"sid": core.record}))).sessions["sid"])
    effects = restarted.start(5.0, launch_now=False)
    notice = next(e.op for e in effects if isinstance(e, Show))
    assert f"({link('p1')})" in notice.text and "was cut" in notice.text
    assert OfferChoices(notice.key, ("rerun",)) in effects

    finished = running(make_core())
    finished.prompt(prompt("p1", "deploy"), 1.0)
    finished.stopping(2.0)
    finished.agent_event(TurnEnded(), 3.0)  # done before the interrupt reached it
    assert finished.record.answered == ("p1",)


def test_a_tool_whose_request_a_stop_withdrew_is_said_not_run_not_refused_by_the_user() -> None:
    """Claude Code answers an interrupt with a request pending by refusing the tool in the
    person's name ("The user doesn't want to proceed…"), though nobody answered it; a
    person's own ❌ keeps the agent's words."""
    refused_by_agent = "The user doesn't want to proceed with this tool use."

    def tool_line_after(stop: str) -> str:
        core = running(make_core())
        core.prompt(prompt("p1", "deploy"), 1.0)
        core.agent_event(ToolCall("tu1", "Bash", {"command": "npm test"}), 1.5)
        core.agent_event(permission_asked("r1", "Bash", {"command": "npm test"}, tool_use_id="tu1"), 2.0)
        core.post_created("perm.0", "perm-post")
        if stop == "supervisor":
            core.stopping(3.0)
            core.agent_event(PermissionCancelled("r1"), 3.1)
        else:
            core.choose(stop, "perm-post", 3.0)
        effects = core.agent_event(ToolOutcome("tu1", is_error=True, text=refused_by_agent), 3.2)
        return next(t for t in texts(effects) if "`Bash`" in t)

    assert "not run: the turn was stopped" in tool_line_after("supervisor")
    assert "not run: the turn was stopped" in tool_line_after("stop")
    assert "doesn't want to proceed" in tool_line_after("deny")


def test_a_request_settled_before_its_post_exists_offers_no_choices_once_it_does() -> None:
    """Withdrawn (or timed out) while its post was still being made (the server slow, or
    down): the post then says "Cancelled", and once made it must not offer 👍/👎 that
    mean nothing any more."""
    core = running(make_core())
    core.prompt(prompt("p1", "deploy"), 1.0)
    asked = core.agent_event(permission_asked("r1", "Bash", {"command": "npm test"}), 2.0)
    assert OfferChoices("perm.0", ("allow_once", "reject")) in asked
    withdrawn = core.agent_event(PermissionCancelled("r1"), 3.0)
    assert OfferChoices("perm.0", ()) in withdrawn  # replaces the offer waiting for the post


def test_a_request_claude_code_suggests_nothing_to_keep_for_offers_no_allow_for_the_session() -> None:
    """An MCP tool, or a directory alone: 🔁 would allow this call and the next would ask
    again, though its post said "Allowed for this session"."""
    nothing = permission_asked("r1", "mcp__db__query", {"sql": "select 1"})
    directory = permission_asked(
        "r2", "Read", {"file_path": "/srv/x"}, suggestions=({"type": "addDirectories", "directories": ["/srv"]},)
    )
    assert nothing.always is None and directory.always is None
    core = running(make_core())
    core.prompt(prompt("p1", "query"), 1.0)
    assert OfferChoices("perm.0", ("allow_once", "reject")) in core.agent_event(nothing, 2.0)


def test_a_conversation_never_saved_starts_anew_even_after_the_agent_was_up() -> None:
    """A kill after a prompt was written but before the agent saved the conversation: the
    next agent, started with --resume, comes up, takes the prompt, then says there is no
    such conversation. It must start anew, not count towards failing the session."""
    record = SessionRecord(
        id="sid", name="alpha", channel_id=CHANNEL, user_id="u", cwd="/tmp", root_id="root", has_history=True
    )
    core = make_core(record, restart=RestartPolicy(max_restarts=0))
    core.start(0.0, launch_now=True)
    core.agent_ready(42, 0.0)
    core.prompt(prompt("p1", "deploy"), 1.0)
    # The Claude side reads the CLI's words; the core hears the port's event.
    (missing,) = ClaudeBackend(["claude"]).conversation(AgentLaunch("sid", "/tmp", True)).receive_stderr(
        "Error: No conversation found with session ID: sid"
    )
    core.agent_event(missing, 2.0)
    effects = core.agent_exited(1, "Error: No conversation found with session ID: sid", 2.0)
    assert LaunchAgent(resume=False) in effects
    assert core.state is SessionState.STARTING and not core.record.has_history
    assert any(link("p1") in t and "was cut" in t for t in texts(effects))



def test_a_conversation_never_saved_is_said_to_start_anew_when_its_prompt_goes_to_the_next_agent() -> None:
    """The resumed agent died on its first prompt without a word on stdout (only stderr):
    the prompt goes to the next agent, and the thread still learns it starts from nothing."""
    record = SessionRecord(
        id="sid", name="alpha", channel_id=CHANNEL, user_id="u", cwd="/tmp", root_id="root", has_history=True
    )
    core = running(make_core(record))
    core.prompt(prompt("p1", "deploy"), 1.0)
    (missing,) = ClaudeBackend(["claude"]).conversation(AgentLaunch("sid", "/tmp", True)).receive_stderr(
        "Error: No conversation found with session ID: sid"
    )
    core.agent_event(missing, 1.2)
    effects = core.agent_exited(1, "", 1.3, last_line_at=0.5)
    said = texts(effects)
    assert any("starts anew" in t for t in said) and not any("cut" in t for t in said), said
    assert sent(core.agent_ready(43, 2.0)) == [SendPrompt("deploy")]

# --- defect 3: allow for this session survives a relaunch ------------------------------


def test_allow_for_session_is_kept_in_the_record_and_given_to_the_next_agent() -> None:
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    core.agent_event(asked("r1", "Bash", "npm test"), 2.0)
    core.post_created("perm.0", "perm-post")
    effects = core.choose("allow_always", "perm-post", 3.0)
    command = sent(effects)[0]
    assert isinstance(command, AllowTool) and command.updated_permissions[0]["destination"] == "session"
    assert core.record.allowed_rules == ("Bash(npm test)",)
    again = decode(encode(State(sessions={"sid": core.record}))).sessions["sid"]
    assert again.allowed_rules == ("Bash(npm test)",)
    argv = ClaudeBackend(["claude"]).argv(AgentLaunch("sid", "/tmp", True, allowed_tools=again.allowed_rules))
    assert argv[argv.index("--allowedTools") + 1] == "Bash(npm test)"


def test_old_state_files_load_with_the_new_fields_empty() -> None:
    raw = (b'{"version": 1, "sessions": {"s": {"id": "s", "name": "a", "channel_id": "c", "user_id": "u",'
           b' "cwd": "/", "unsettled": ["p"]}}, "channels": {}}')
    record = decode(raw).sessions["s"]
    assert record.allowed_rules == () and record.lapsed_requests == {} and record.prompt_texts == {}


# --- defect 8: a request pending across a restart is said to have lapsed --------------


def test_a_request_pending_at_a_restart_is_edited_to_say_it_lapsed() -> None:
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    core.agent_event(asked(), 2.0)
    effects = core.post_created("perm.0", "perm-post")
    (save,) = [e for e in effects if isinstance(e, SaveRecord)]
    record = save.record
    assert list(record.lapsed_requests) == ["perm-post"]
    # On disk before the session goes on, not with a later write: the request shows
    # already, and a kill meanwhile would leave its buttons live for good.
    assert save.durable
    # the supervisor stops here; the next start edits the post
    restarted = make_core(decode(encode(State(sessions={"sid": record}))).sessions["sid"])
    effects = restarted.start(10.0, launch_now=False)
    edit = next(e for e in effects if isinstance(e, EditPost))
    assert edit.post_id == "perm-post" and "Lapsed" in edit.text and "npm test" in edit.text
    assert restarted.record.lapsed_requests == {}


def test_a_request_id_an_agent_uses_again_gets_a_post_of_its_own() -> None:
    """An ACP agent numbers its requests from 0 in each process: after a relaunch, its
    request "0" is a new question, and must not edit the earlier one's post."""
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    first = [e.op.key for e in core.agent_event(asked("0"), 2.0) if isinstance(e, Show)]
    core.post_created(first[0], "perm-post-1")
    core.choose("allow_once", "perm-post-1", 3.0)
    core.agent_event(TurnEnded(), 4.0)
    core.prompt(prompt("p2"), 5.0)
    second = [e.op.key for e in core.agent_event(asked("0", command="pwd"), 6.0) if isinstance(e, Show)]
    assert second and second[0] != first[0]
    core.post_created(second[0], "perm-post-2")
    effects = core.choose("allow_once", "perm-post-2", 7.0)
    assert [c for c in sent(effects) if isinstance(c, AllowTool)]


def test_an_answered_request_does_not_lapse() -> None:
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    core.agent_event(asked(), 2.0)
    core.post_created("perm.0", "perm-post")
    core.choose("allow_once", "perm-post", 3.0)
    assert core.record.lapsed_requests == {}


# --- timing, with an explicit now (moved down from the e2e tests) -----------------------


def test_turn_timeout_interrupts_exactly_when_due_then_the_grace_ends_in_a_kill() -> None:
    core = running(make_core(turn_timeout_s=100, stall_timeout_s=float("inf"), interrupt_grace_s=10))
    core.prompt(prompt("p1"), 0.0)
    assert core.next_deadline() is not None
    assert not [c for c in sent(core.tick(99.9)) if isinstance(c, Interrupt)]
    assert [c for c in sent(core.tick(100.0)) if isinstance(c, Interrupt)]
    deadline = core.next_deadline()
    assert deadline is not None and deadline <= 110.0  # typing may come sooner
    assert not any(isinstance(e, StopAgent) for e in core.tick(109.9))
    effects = core.tick(110.0)
    assert StopAgent("hung") in effects and "did not answer the interrupt" in "\n".join(texts(effects))
    effects = core.agent_exited(None, "", 111.0)
    assert any(isinstance(e, LaunchAgent) and e.resume for e in effects)
    assert any(f"({link('p1')})" in t for t in texts(effects))  # the cut turn is named


def test_an_agent_that_took_no_input_is_ended_as_hung_not_counted_as_a_crash() -> None:
    core = running(make_core(stall_timeout_s=30))
    core.prompt(prompt("p1"), 0.0)
    effects = core.agent_deaf(30.0)
    assert StopAgent("hung") in effects
    assert texts(effects) == ["⏱️ The agent was terminated: it took no input for 30 s (frozen?). It restarts with the conversation."]
    assert not [c for c in sent(core.tick(100.0)) if isinstance(c, Interrupt)]  # the watchdog stands down
    assert core.agent_deaf(30.0) == []  # already being ended
    effects = core.agent_exited(-15, "", 31.0)
    assert any(isinstance(e, LaunchAgent) and e.resume for e in effects)
    assert [t for t in texts(effects) if f"({link('p1')}) was cut" in t]
    assert not [t for t in texts(effects) if "exited unexpectedly" in t or "keeps exiting" in t]


def test_an_interrupted_turn_that_ends_says_the_watchdog_did_it() -> None:
    core = running(make_core(turn_timeout_s=100))
    core.prompt(prompt("p1"), 0.0)
    core.tick(100.0)
    effects = core.agent_event(TurnEnded(subtype="error_during_execution"), 101.0)
    assert any("watchdog interrupted the turn" in t for t in texts(effects))
    assert core.state is SessionState.IDLE


def test_stall_counts_from_the_last_output() -> None:
    core = running(make_core(stall_timeout_s=30))
    core.prompt(prompt("p1"), 0.0)
    core.agent_event(TextDelta("working"), 20.0)
    deadline = core.next_deadline()
    assert deadline is not None and deadline <= 50.0
    assert not [c for c in sent(core.tick(49.9)) if isinstance(c, Interrupt)]
    assert [c for c in sent(core.tick(50.0)) if isinstance(c, Interrupt)]


def test_a_line_that_is_no_event_counts_as_output_but_never_moves_the_stall_clock_back() -> None:
    core = running(make_core(stall_timeout_s=30))
    core.prompt(prompt("p1"), 0.0)
    core.agent_printed(20.0)  # a thinking delta, a progress note: no event, but output
    assert not [c for c in sent(core.tick(49.9)) if isinstance(c, Interrupt)]
    core.agent_event(TextDelta("working"), 40.0)
    core.agent_printed(30.0)  # the time of a line read before that event was handled
    assert not [c for c in sent(core.tick(69.9)) if isinstance(c, Interrupt)]
    assert [c for c in sent(core.tick(70.0)) if isinstance(c, Interrupt)]


def test_waiting_for_a_person_is_not_a_stall() -> None:
    core = running(make_core(stall_timeout_s=30, approval_timeout_s=600))
    core.prompt(prompt("p1"), 0.0)
    core.agent_event(asked(), 1.0)
    core.post_created("perm.0", "perm-post")
    assert not [c for c in sent(core.tick(200.0)) if isinstance(c, Interrupt)]
    core.choose("allow_once", "perm-post", 250.0)  # answered long after the stall timeout
    assert not [c for c in sent(core.tick(250.0)) if isinstance(c, Interrupt)]
    assert [c for c in sent(core.tick(280.0)) if isinstance(c, Interrupt)]


def test_approval_is_reminded_at_half_and_denied_at_the_timeout() -> None:
    core = running(make_core(approval_timeout_s=60, stall_timeout_s=float("inf")))
    core.prompt(prompt("p1"), 0.0)
    core.agent_event(asked(), 10.0)
    assert not texts(core.tick(39.9))
    reminder = texts(core.tick(40.0))
    assert len(reminder) == 1 and reminder[0].startswith("@alice") and "denied in 30s" in reminder[0]
    assert not texts(core.tick(50.0))  # once
    assert not sent(core.tick(69.9))
    effects = core.tick(70.0)
    denied = sent(effects)
    assert len(denied) == 1 and isinstance(denied[0], DenyTool) and "No answer within 1m 0s" in denied[0].message
    assert any("No answer in time" in t for t in texts(effects))
    assert core.state is SessionState.BUSY


def test_an_idle_agent_is_suspended_when_due_and_a_prompt_wakes_it() -> None:
    core = running(make_core(idle_suspend_s=50))
    core.prompt(prompt("p1"), 0.0)
    core.agent_event(TurnEnded(), 5.0)
    assert core.next_deadline() == 55.0
    assert not core.tick(54.9)
    assert core.tick(55.0) == [StopAgent("suspend")]
    effects = core.agent_exited(0, "", 56.0)
    assert core.state is SessionState.SUSPENDED and not any(isinstance(e, LaunchAgent) for e in effects)
    effects = core.prompt(prompt("p2"), 100.0)
    assert any(isinstance(e, LaunchAgent) and e.resume for e in effects)


def test_a_stop_while_the_prompt_waits_for_its_agent_means_that_prompt_never_runs() -> None:
    core = make_core()
    core.start(0.0, launch_now=True)  # the agent is starting
    assert core.prompt(prompt("p1"), 0.5) == [] and core.prompt(prompt("p2"), 0.6) == []
    effects = core.command(commands.Stop(), "c1", CHANNEL, 1.0)
    said = "\n".join(texts(effects))
    assert "Nothing to stop" not in said and "Not run, stopped before it started" in said
    assert f"({link('p1')})" in said and f"({link('p2')})" not in said
    assert MarkHandled(CHANNEL, "p1") in effects and MarkHandled(CHANNEL, "c1") in effects
    assert sent(effects) == []
    assert sent(core.agent_ready(42, 2.0)) == [SendPrompt("text of p2")]  # the next one runs, whole
    core.agent_event(TurnEnded(), 2.5)
    assert texts(core.command(commands.Stop(), "c2", CHANNEL, 3.0)) == ["Nothing to stop: no turn is running."]


def test_an_interrupt_sent_before_the_agent_began_the_turn_is_sent_again_once_it_begins() -> None:
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    assert [type(c) for c in sent(core.command(commands.Stop(), "c1", CHANNEL, 1.1))] == [Interrupt]
    assert [type(c) for c in sent(core.agent_event(TurnStarted("sid"), 1.5))] == [Interrupt]  # again
    assert sent(core.agent_event(TurnStarted("sid"), 1.6)) == []  # once
    core.agent_event(TurnEnded(), 2.0)
    core.prompt(prompt("p2"), 3.0)
    assert sent(core.agent_event(TurnStarted("sid"), 3.1)) == []  # not interrupted: nothing to send
    assert [type(c) for c in sent(core.command(commands.Stop(), "c2", CHANNEL, 3.5))] == [Interrupt]


def test_a_prompt_during_the_suspend_wakes_the_agent_right_after() -> None:
    core = running(make_core(idle_suspend_s=50))
    core.prompt(prompt("p1"), 0.0)
    core.agent_event(TurnEnded(), 5.0)
    core.tick(55.0)
    assert core.prompt(prompt("p2"), 55.5) == []  # the agent is on its way down
    effects = core.agent_exited(0, "", 56.0)
    assert any(isinstance(e, LaunchAgent) for e in effects)
    assert SendPrompt("text of p2") in sent(core.agent_ready(43, 57.0))


def test_a_prompt_during_the_suspend_waits_for_the_next_agent_whatever_the_one_going_does() -> None:
    """The agent being suspended is in a turn of its own (a background task woke it, then
    it fell silent): neither the end of that wait nor of that turn hands the prompt to the
    agent that is going away, where it would be lost with it (handled, never answered)."""
    core = running(make_core(idle_suspend_s=50, stall_timeout_s=30))
    core.agent_event(TurnStarted("s"), 1.0)  # its own turn; silent from now on
    assert core.tick(51.0) == [StopAgent("suspend")]
    assert _prompts_sent(core.prompt(prompt("p2", "question"), 51.2)) == []
    assert _prompts_sent(core.tick(51.3)) == []  # its own turn is silent for longer than the stall
    assert core.next_deadline() is None, "no clock is due until the agent's exit (none past: a busy loop)"
    assert _prompts_sent(core.agent_event(TurnEnded(), 51.5)) == []  # it ends it on its way down
    effects = core.agent_exited(0, "", 52.0)
    assert any(isinstance(e, LaunchAgent) for e in effects)
    assert _prompts_sent(core.agent_ready(43, 53.0)) == ["question"]


def test_no_clock_stays_due_for_a_prompt_the_stopping_supervisor_holds() -> None:
    """The supervisor stops while a prompt waits for a silent turn of the agent's own: the
    end of that wait would let no prompt go, so it is no deadline (one past would be due
    again at once, for ever: the session would spin instead of waiting for its stop)."""
    core = running(make_core(stall_timeout_s=30))
    core.agent_event(TurnStarted("s"), 1.0)
    core.prompt(prompt("p2"), 2.0)
    assert core.next_deadline() == 31.0
    core.stopping(3.0)
    assert core.next_deadline() is None


# --- a turn the agent begins by itself --------------------------------------------------


def _prompts_sent(effects: list[Effect]) -> list[str]:
    return [c.text for c in sent(effects) if isinstance(c, SendPrompt)]


def test_a_prompt_waits_for_a_turn_the_agent_began_by_itself() -> None:
    """Claude Code's background tasks can wake it for a turn of its own (PROTOCOL §5). A
    prompt written then would take that turn's result for its own answer, and its real
    turn would run with no turn here (no !stop, no watchdog): it waits for that end."""
    core = running(make_core())
    core.agent_event(TurnStarted("s"), 1.0)  # no prompt of ours: the agent's own turn
    assert _prompts_sent(core.prompt(prompt("B", "question B"), 2.0)) == []
    core.agent_event(TextDelta("the background task finished"), 3.0)
    assert _prompts_sent(core.agent_event(TurnEnded(), 4.0)) == ["question B"]
    assert core.record.answered == () and core.turn is not None and core.turn.prompt.post_id == "B"
    core.agent_event(TurnStarted("s"), 5.0)
    assert [c for c in sent(core.interrupt(6.0)) if isinstance(c, Interrupt)], "B's turn can be stopped"
    core.agent_event(TurnEnded(), 7.0)
    assert core.record.answered == ("B",)


def test_a_stop_during_a_turn_the_agent_began_by_itself_stops_that_turn_and_keeps_the_queue() -> None:
    """It said the prompt waiting behind that turn "Not run, stopped before it started" and
    sent the agent nothing: the turn everyone could see streaming ran on."""
    core = running(make_core())
    core.agent_event(TurnStarted("s"), 1.0)  # no prompt of ours: the agent's own turn
    core.agent_event(TextDelta("the background task found"), 1.5)
    core.prompt(prompt("B", "question B"), 2.0)
    effects = core.interrupt(3.0)
    assert [c for c in sent(effects) if isinstance(c, Interrupt)]
    assert not any("Not run" in getattr(e, "text", "") for e in effects)
    assert [p.post_id for p in core.queue] == ["B"]
    assert _prompts_sent(core.agent_event(TurnEnded(terminal_reason="aborted_streaming"), 3.5)) == ["question B"]


def test_a_permission_asked_in_a_turn_the_agent_began_by_itself_is_denied_where_the_person_sees_it() -> None:
    """It was denied with nothing in the thread: the person saw the background task's words
    stop short and never learned that it wanted to run something."""
    core = running(make_core())
    core.agent_event(TurnStarted("s"), 1.0)  # no prompt of ours: the agent's own turn
    effects = core.agent_event(asked("r9", command="rm -rf build"), 1.5)
    (denied,) = [c for c in sent(effects) if isinstance(c, DenyTool)]
    assert denied.request_id == "r9"
    (said,) = [t for t in texts(effects) if "Permission needed" in t]
    assert "rm -rf build" in said and "turn it began by itself" in said
    assert core.state is SessionState.IDLE and not core.loop.approvals.pending
    assert not [e for e in effects if isinstance(e, OfferChoices)]  # nothing left to answer


def test_a_turn_the_agent_began_and_fell_silent_in_holds_the_queue_only_for_the_stall_timeout() -> None:
    core = running(make_core(stall_timeout_s=30))
    core.agent_event(TurnStarted("s"), 1.0)
    core.agent_event(TextDelta("working"), 10.0)
    assert _prompts_sent(core.prompt(prompt("B", "question B"), 11.0)) == []
    assert core.next_deadline() == 40.0  # 30 s after the agent was last heard
    assert _prompts_sent(core.tick(39.9)) == []
    assert _prompts_sent(core.tick(40.0)) == ["question B"]


def test_a_turn_started_for_our_prompt_holds_nothing_after_it() -> None:
    core = running(make_core())
    assert _prompts_sent(core.prompt(prompt("A", "question A"), 1.0)) == ["question A"]
    core.agent_event(TurnStarted("s"), 1.1)
    core.prompt(prompt("B", "question B"), 1.5)
    assert _prompts_sent(core.agent_event(TurnEnded(), 2.0)) == ["question B"]


def test_a_failure_notice_fits_one_post_however_long_what_the_agent_printed() -> None:
    """The last stderr lines go into it (a crash printing a minified source line): over the
    front end's limit, the server refused the post and the session failed unsaid."""
    core = running(make_core(max_message_chars=4096, restart=RestartPolicy(max_restarts=0)))
    effects = core.agent_exited(1, "TypeError at\n" + "var a=1;" * 5000, 1.0)
    (failed,) = [t for t in texts(effects) if "The agent keeps exiting" in t]
    assert len(failed) <= 4096 and failed.count("```") == 2
    notes = texts([core.note("⏭️ Not run: " + ", ".join(f"[this message](http://x/{i})" for i in range(500)))])
    assert len(notes[0]) <= 4096 and notes[0].endswith("… (cut to fit one post)")


def test_a_request_with_a_long_description_fits_one_post() -> None:
    req = permission_asked("r1", "Bash", {"command": "ls"}, description="why " * 20000)
    text = permission_text(req, legend="React", max_chars=4096)
    assert len(text) <= 4096 and "```bash\nls\n```" in text


def shown(effects: list[Effect]) -> dict[str, str]:
    return {e.op.key: e.op.text for e in effects if isinstance(e, Show)}


@pytest.mark.parametrize("queued_before", [False, True], ids=["queued while asked", "queued before the request"])
def test_a_prompt_queued_while_a_request_waits_is_said_queued_above_it(queued_before: bool) -> None:
    """The line once came only with words below the request: a person who typed "yes"
    instead of reacting saw no sign of it until the request timed out."""
    core = running(make_core())
    core.prompt(prompt("p1", "deploy"), 1.0)
    core.agent_event(TextDelta("Running the tests first."), 1.5)
    if queued_before:
        core.prompt(prompt("p2", "yes"), 1.8)
    asked = core.agent_event(permission_asked("r1", "Bash", {"command": "npm test"}), 2.0)
    if not queued_before:
        asked = core.prompt(prompt("p2", "yes"), 3.0)
    assert "1 more prompt queued" in shown(asked).get("t1.0", "")  # above the request, at once
    below = shown(core.agent_event(TextDelta("Tests pass."), 4.0))
    assert "1 more prompt queued" in below["t1.f1.0"]  # it moves with the words below it
    assert "queued" not in below["t1.0"]


def test_a_conversation_started_anew_counts_its_cost_from_zero_and_the_session_keeps_the_rest() -> None:
    """The agent lost the conversation (ConversationMissing): the new one's first turn
    once showed its total less the lost one's, and `!status` only the new one's cost."""
    core = running(make_core())
    core.prompt(prompt("p1", "one"), 1.0)
    core.agent_event(TurnEnded(total_cost_usd=0.30), 2.0)
    core.agent_event(ConversationMissing("no such conversation"), 3.0)
    core.prompt(prompt("p2", "two"), 4.0)
    (done,) = [t for t in texts(core.agent_event(TurnEnded(total_cost_usd=0.50), 5.0)) if "Done" in t]
    assert done.endswith("$0.5000")  # not 0.50 - 0.30
    assert "cost so far: $0.8000" in core.status_text(6.0)


def test_a_cut_turns_posts_are_put_final_and_the_next_words_begin_a_turn_of_their_own() -> None:
    """The renderer kept a cut turn open: its posts stayed unfinished in the outbox, and a
    turn the next agent began by itself was written into the cut turn's posts."""
    core = running(make_core())
    core.prompt(prompt("p1", "deploy"), 1.0)
    core.agent_event(TextDelta("Deploying"), 1.5)
    cut = [e.op for e in core.agent_exited(None, "", 2.0, last_line_at=1.5) if isinstance(e, Show)]
    (last,) = [op for op in cut if op.key == "t1.0"]
    assert last.final and last.text == "Deploying"
    core.agent_ready(43, 3.0)
    later = shown(core.agent_event(TextDelta("Resumed on my own."), 4.0))
    assert not any(key.startswith("t1.") for key in later)


def _restarted(core: SessionCore) -> SessionCore:
    return make_core(decode(encode(State(sessions={"sid": core.record}))).sessions["sid"])


def _a_turn_runs_beside_a_cut_notice_n1() -> SessionCore:
    """A restart said p1 ("build it") cut, with 🔁 on notice n1; p2's turn runs now."""
    record = SessionRecord(id="sid", name="alpha", channel_id=CHANNEL, user_id="u", cwd="/tmp", root_id="root",
                           has_history=True, unsettled=("p1",), prompt_texts={"p1": "build it"})
    core = make_core(record)
    notice = next(e.op for e in core.start(0.0, launch_now=True) if isinstance(e, Show))
    core.post_created(notice.key, "n1")
    core.agent_ready(42, 0.5)
    core.prompt(prompt("p2", "then test"), 1.0)
    return core


def test_a_rerun_waiting_behind_a_turn_is_run_by_the_next_start() -> None:
    """🔁 while another turn runs queues the prompt; the 🔁 is no post a catch-up brings
    back, and its offer is gone from the record: the save that takes the offer away keeps
    the rerun instead (handed on), durable before the choice is settled, so a restart
    before it ran runs it, once, and calls nothing cut."""
    core = _a_turn_runs_beside_a_cut_notice_n1()
    effects = core.choose("rerun", "n1", 2.0)
    assert not sent(effects)  # it waits behind p2's turn
    (save,) = [e for e in effects if isinstance(e, SaveRecord)]
    assert save.durable and "n1" not in save.record.rerun_offers
    assert effects.index(save) < effects.index(SettleChoices("n1"))
    core.stopping(3.0)
    core.agent_event(TurnEnded(subtype="error_during_execution", terminal_reason="aborted_streaming"), 3.5)
    restarted = _restarted(core)
    started = restarted.start(5.0, launch_now=False)
    assert any(isinstance(e, LaunchAgent) for e in started)  # for it, though agents start lazily
    said = "\n".join(texts(started))
    assert f"({link('p2')})" in said and link("n1") not in said  # p2 was cut; the rerun was not
    effects = restarted.agent_ready(43, 6.0)
    assert sent(effects) == [SendPrompt("build it")] and MarkHandled(CHANNEL, "n1") in effects
    assert restarted.record.handed_on == ()
    assert restarted.choose("rerun", "n1", 7.0) == []  # run once
    again = _restarted(restarted)  # killed in its turn: said cut, not run a second time
    assert not sent(again.start(8.0, launch_now=True) + again.agent_ready(44, 8.5))


def test_a_rerun_said_not_run_at_the_end_is_not_run_by_the_next_start() -> None:
    core = _a_turn_runs_beside_a_cut_notice_n1()
    core.choose("rerun", "n1", 2.0)
    effects = core.command(commands.EndSession(), "c1", CHANNEL, 3.0)
    assert f"({link('n1')})" in "\n".join(texts(effects)) and MarkHandled(CHANNEL, "n1") in effects
    assert core.record.handed_on == ()


def test_a_get_files_post_starts_only_after_its_mark() -> None:
    """The file is posted by a task of its own, which no hold of the poster covers: were it
    started before the mark is durable, a restart would handle `!get` and post it again."""
    effects = running(make_core()).command(commands.GetFile("report.txt"), "g1", CHANNEL, 1.0)
    assert effects == [MarkHandled(CHANNEL, "g1"), SendFile("report.txt")]
