"""How each prompt handed to the agent visibly ends: its answer shows, or a notice says it was cut.

`PromptEndings` is the part of `core.session.SessionCore` that keeps a handed prompt
unsettled (in the record) until the thread shows how its turn ended: the answer's posts
(after a crash, posted again whole: `answer_again`), a reply that it was not run, or the
notice that links it and says it was cut, on which 🔁 runs it again (the newest such
offers are kept with the record, so they outlive a restart). The session core owns
it, hands it the turns that end and the notices to post, and keeps everything else.

It must never change the session's state, read a clock or change the record in place: a
change to the record is a `SaveRecord` it returns, which the core adopts.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from supervisor.core.events import ChoiceKind
from supervisor.core.session_effects import (
    Effect,
    OfferChoices,
    QueuedPrompt,
    SaveRecord,
    SessionSettings,
    Show,
)
from supervisor.core.state import SessionRecord

RERUN_CHOICE: tuple[ChoiceKind, ...] = ("rerun",)  # on a cut turn's notice: run its prompt again
RERUN_OFFERS = 10  # cut notices whose 🔁 still runs their prompt again (the newest), kept in the record
PROMPT_KEEP_CHARS = 16_000  # prompts up to this long are kept with the record, for a rerun


@attrs.define
class PromptEndings:
    """Invariants: `_settling` holds the handed prompts whose ending is posting, each with
    the keys of the posts that show it; `_rerun_keys` the cut notices not yet created."""

    settings: SessionSettings
    note: Callable[[str], Show]  # a notice at the thread's end (the core numbers them)
    _settling: list[tuple[str, frozenset[str]]] = attrs.field(factory=list)  # (prompt post id, keys)
    _rerun_keys: dict[str, QueuedPrompt] = attrs.field(factory=dict)  # notice key -> its prompt
    cut: QueuedPrompt | None = None  # the prompt whose turn the agent's end cut, for the notice

    def say_cut(self, text: str, *, rerun: bool = True) -> list[Effect]:
        """The notice for the turn the agent's end cut, if it cut one."""
        return [] if self.cut is None else self.cut_notice(self.cut, text, rerun=rerun)

    def cut_notice(self, prompt: QueuedPrompt, text: str, *, rerun: bool = True) -> list[Effect]:
        """The notice that a prompt's turn was cut, linking it; 🔁 on it runs it again. The
        prompt is settled once the notice shows."""
        note = self.note(text.format(link=f"[your message]({self.settings.permalink(prompt.post_id)})"))
        note = attrs.evolve(note, op=attrs.evolve(note.op, reply_to=prompt.post_id))  # where no link shows
        if not rerun:
            self._settling.append((prompt.post_id, frozenset({note.op.key})))
            return [note]
        if not prompt.text or len(prompt.text) > PROMPT_KEEP_CHARS:
            # Nothing to run again, or too long to ride in every save of the record.
            note = attrs.evolve(note, op=attrs.evolve(note.op, text=note.op.text + " Post it again to run it."))
            self._settling.append((prompt.post_id, frozenset({note.op.key})))
            return [note]
        legend = self.settings.legend(RERUN_CHOICE)
        note = attrs.evolve(note, op=attrs.evolve(note.op, text=note.op.text + (f" {legend}" if legend else "")))
        self._settling.append((prompt.post_id, frozenset({note.op.key})))
        self._rerun_keys[note.op.key] = prompt
        return [note, OfferChoices(note.op.key, RERUN_CHOICE)]

    def restored(self, record: SessionRecord) -> list[Effect]:
        """At a start: the prompts a stop of the supervisor left unsettled say how they ended
        (but those no agent acted on, which run again: `to_run_again`)."""
        effects: list[Effect] = []
        again = {p.post_id for p in to_run_again(record)}
        for post_id in (p for p in record.unsettled if p not in again):
            prompt = QueuedPrompt(post_id, record.channel_id, record.prompt_texts.get(post_id, ""))
            if post_id in record.answered and (parts := record.answer_texts.get(post_id)):
                effects += self.answer_again(prompt, parts)
            elif post_id in record.answered:
                # The agent finished that turn; only the posting of its answer was cut, and
                # the answer was too long to keep. What of it shows depends on the front end
                # (on Telegram, a draft that was not whole yet is gone): 🔁 runs it again.
                effects += self.cut_notice(
                    prompt,
                    "⚠️ The supervisor restarted while the answer to {link} was being posted: the agent "
                    "had finished that turn, but its answer above may be incomplete, or missing.",
                )
            else:
                effects += self.cut_notice(prompt, "⚠️ The supervisor restarted before the answer to {link} was complete; that turn was cut.")
        return effects

    def answer_again(self, prompt: QueuedPrompt, parts: tuple[str, ...]) -> list[Effect]:
        """The answer a stop of the supervisor kept from showing whole (the agent had
        finished it): all of it again, below a line that says why. What showed of it before
        depends on the front end (a Telegram draft that was not whole yet is gone), so it
        comes whole either way. The prompt is settled once it shows."""
        link = f"[your message]({self.settings.permalink(prompt.post_id)})"
        head = self.note(f"⚠️ The supervisor restarted while the answer to {link} was being posted; here it is, whole:")
        head = attrs.evolve(head, op=attrs.evolve(head.op, reply_to=prompt.post_id))  # where no link shows
        notes = [head, *map(self.note, parts)]
        self._settling.append((prompt.post_id, frozenset(note.op.key for note in notes)))
        return list(notes)

    def said_by(self, post_id: str, keys: frozenset[str]) -> None:
        """The posts `keys` say how a handed prompt ended (its turn's answer; a reply that it
        was not run): it is settled once they show."""
        self._settling.append((post_id, keys))

    @property
    def settling(self) -> bool:
        """Some handed prompt waits for the posts that say how it ended to show."""
        return bool(self._settling)

    def progress(self, shows: Callable[[str], bool], record: SessionRecord) -> list[Effect]:
        """Posts reached the server; `shows(key)` says whether a post shows what it should.
        A turn whose posts all show is settled at once (not when the whole thread is), so
        a restart never calls a complete answer cut while a later turn streams."""
        done = {post_id for post_id, keys in self._settling if all(map(shows, keys))}
        if not done:
            return []
        self._settling = [(p, keys) for p, keys in self._settling if p not in done]
        unsettled = tuple(p for p in record.unsettled if p not in done)
        texts = {p: t for p, t in record.prompt_texts.items() if p in unsettled}
        answered = tuple(p for p in record.answered if p in unsettled)
        answer_texts = {p: parts for p, parts in record.answer_texts.items() if p in unsettled}
        handed_on = record.handed_on_but(done)
        settled = attrs.evolve(
            record,
            unsettled=unsettled,
            prompt_texts=texts,
            answered=answered,
            answer_texts=answer_texts,
            handed_on=handed_on,
        )
        # A kept answer that showed: until this is on disk, a crash would post it again.
        return [SaveRecord(settled, at_once=len(answer_texts) < len(record.answer_texts))]

    def post_created(self, key: str, post_id: str, record: SessionRecord) -> list[Effect] | None:
        """None where the post is not a cut notice that offers a rerun."""
        if key not in self._rerun_keys:
            return None
        # Kept with the record: 🔁 may come after another restart.
        offers = {**record.rerun_offers, post_id: self._rerun_keys.pop(key).text}
        return [SaveRecord(attrs.evolve(record, rerun_offers=dict(list(offers.items())[-RERUN_OFFERS:])))]


def to_run_again(record: SessionRecord) -> list[QueuedPrompt]:
    """The prompts a start runs again: their agent exited without a word on them, and no
    agent was given them before the supervisor stopped (`SessionRecord.handed_on`)."""
    return [
        QueuedPrompt(post_id, record.channel_id, record.prompt_texts[post_id])
        for post_id in record.handed_on
        if post_id in record.unsettled and post_id in record.prompt_texts
    ]


def rerun(post_id: str, record: SessionRecord) -> tuple[QueuedPrompt, SaveRecord]:
    """🔁 on a cut notice: its prompt again, as a prompt of its own (the notice's post
    stands for it), and the record without that offer, which has it handed on instead
    (`SessionRecord.handed_on`), durably: the 🔁 is no post a catch-up fetches again, so
    should the supervisor stop before an agent takes it (behind a running turn, say), the
    next start runs it from there."""
    text = record.rerun_offers[post_id]
    offers = {p: t for p, t in record.rerun_offers.items() if p != post_id}
    taken = attrs.evolve(
        record,
        rerun_offers=offers,
        unsettled=tuple(dict.fromkeys((*record.unsettled, post_id))),
        prompt_texts={**record.prompt_texts, post_id: text},
        handed_on=tuple(dict.fromkeys((*record.handed_on, post_id))),
    )
    return QueuedPrompt(post_id, record.channel_id, text), SaveRecord(taken, durable=True)
