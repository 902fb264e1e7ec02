#!/usr/bin/env python3
"""The kill -9 soak for Telegram: `.venv/bin/python benchmarks/soak_telegram.py [--kills N --drops M | --quick]`.

`soak.py`'s soak, with Telegram in place of Mattermost: the fake Bot API
(`tests/fakes/telegram_botapi.py`) in this process, the supervisor as a child process
with the product's defaults (long polls of 30 s, about one message a second per chat),
one topic per session in Alice's private chat. Each session is made with `/new` in the
main view, and (unless `--no-warm-up`) answers one prompt. Then prompts are written in
the topics at random intervals (a topic with 3 prompts still open gets none until one is
answered or noticed; a share streamed slowly, a share with a document attached), also
while the supervisor is down, while it is SIGKILLed at random moments and restarted as
soon as it polls again. In between, the long poll is cut at random: the `getUpdates`
waiting at the server ends with no answer (the connection closed, as a proxy or a network
change does), and the next one to three get 502. Then prompting stops, every prompt is
waited for, each topic gets a sentinel prompt, the updates are waited for to be confirmed,
the supervisor stops gracefully and the figures are counted, as `soak.py` defines them
(thread read as topic), with these differences:

- noticed: a Telegram notice names no message ("the answer to your message was cut"), so
  each notice in a topic is given to the earliest prompt before it in that topic that has
  no answer and no notice yet (else to the latest answered one: "answered and noticed").
  "lost" is then a lower bound: a notice a kill left needlessly could hide a lost prompt;
- long-poll cuts take the place of WebSocket drops; prompts written while down counts
  those written between a kill and the restart's first poll;
- finished, never shown: prompts whose turn an agent finished (a `result` line after the
  prompt in its log) and whose answer never reached the topic (a streamed answer is a
  draft until it is whole, and a kill before its `sendMessage` leaves nothing behind);
- updates given twice: updates `getUpdates` returned more than once (a kill came before
  the offset confirmed them; each must still be handled once);
- updates never confirmed: updates the server still keeps at the end (must be 0).

Exit status 1 on any bad figure of `soak.py`, or an update never confirmed. `--json PATH`
also writes the figures. Not run in CI; its quick mode is (tests/test_soak_quick.py).
"""

from __future__ import annotations

import os
import random
import re
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import attrs  # noqa: E402
import trio  # noqa: E402

from benchmarks.soak import (  # noqa: E402
    ATTACHED,
    SENTINEL,
    Figures,
    Plan,
    Prompt,
    Tally,
    agent_processes,
    arguments,
    count_prompts,
    plan_of,
    prompt_of,
    run_and_report,
    spread,
    state_figures,
    stray_files,
)
from benchmarks.world import (  # noqa: E402
    DEFAULT_EDIT_INTERVAL_MS,
    SPAWN_TIMEOUT_S,
    agent_lines,
    prompt_text,
    stop_child,
)
from supervisor.chat.telegram import ids  # noqa: E402
from supervisor.core.uploads import upload_folder  # noqa: E402
from tests.fakes.mattermost_http import Request, Response  # noqa: E402
from tests.fakes.telegram_botapi import TOKEN, FakeBotApi  # noqa: E402
from tests.harness import FAKE_AGENT, write_toml  # noqa: E402
from tests.reposts import AnsweredAgain  # noqa: E402
from tests.telegram_world import ALICE, FAST, TgWorld  # noqa: E402

# A whole answer, as Telegram shows it: the list of files is a paragraph of its own, and
# its items start with "•".
ANSWER = re.compile(r"echo #\d+: (soak-\d+)(\n\nAttached files[^\n]*\n(?:\n• [^\n]*)+)? \(earlier: (?:none|.*?')\)", re.S)


def is_notice(text: str) -> bool:
    """Both notices a restart leaves: "cut" (the turn was running) and "may be incomplete"
    (the agent had finished; its answer was being posted)."""
    return "cut" in text.lower() or "may be incomplete" in text


class CuttableBotApi(FakeBotApi):
    """The fake Bot API, whose waiting long polls `cut_polls` ends with no answer."""

    def __init__(self) -> None:
        super().__init__()
        self._polls: set[trio.CancelScope] = set()

    @property
    def polls_waiting(self) -> int:
        return len(self._polls)

    async def respond(self, request: Request) -> Response | None:
        if not request.path.endswith("/getUpdates"):
            return await super().respond(request)
        with trio.CancelScope() as poll:
            self._polls.add(poll)
            try:
                return await super().respond(request)
            finally:
                self._polls.discard(poll)
        return None  # cut: the connection closes with no answer

    def cut_polls(self) -> int:
        """End every long poll waiting now; how many there were."""
        for poll in self._polls:
            poll.cancel()
        return len(self._polls)


@attrs.define
class TgFigures(Figures):
    while_down: int = 0
    finished_unshown: int = 0
    given_twice: int = 0
    unconfirmed: int = 0

    @property
    def ok(self) -> bool:
        return super().ok and self.unconfirmed == 0

    def report(self, drops: str = "long-poll cuts", place: str = "topic") -> str:
        rows = super().report(drops, place).splitlines()  # kills, drops, prompts, ..., run time
        return "\n".join([
            *rows[:3],
            f"written while down         {self.while_down}",
            *rows[3:-1],
            f"finished, never shown      {self.finished_unshown}",
            f"updates given twice        {self.given_twice}",
            f"updates never confirmed    {self.unconfirmed}",
            rows[-1],
        ])


def message_id(prompt: Prompt) -> int:
    return ids.parse_post(prompt.post_id)[1]


def attribute_notices(notices: list[tuple[int, str]], prompts: dict[str, Prompt], answered: set[str]) -> set[str]:
    """The prompts the notices (message id, topic) stand for: each takes the earliest
    prompt of its topic before it with neither an answer nor a notice, else the latest
    answered one before it without a notice."""
    noticed: set[str] = set()
    for notice_id, topic in sorted(notices):
        before = [p for p in prompts.values()
                  if p.root_id == topic and message_id(p) < notice_id and p.text not in noticed]  # fmt: skip
        unanswered = [p for p in before if p.text not in answered]
        if unanswered:
            noticed.add(min(unanswered, key=message_id).text)
        elif before:
            noticed.add(max(before, key=message_id).text)
    return noticed


@attrs.define
class TgSoak:
    """One run. Invariant: `prompts` holds every prompt written, by text; a prompt's
    `root_id` is its topic's id, as a string."""

    w: TgWorld
    fake: CuttableBotApi
    plan: Plan
    rng: random.Random
    topics: list[int] = attrs.Factory(list)
    prompts: dict[str, Prompt] = attrs.Factory(dict)
    figures: TgFigures = attrs.Factory(TgFigures)
    down: bool = False  # between a kill and the restart's first poll
    # What the prompter knows, read incrementally from the bot's messages: prompts not yet
    # answered or noticed, by topic; the newest message read.
    outstanding: dict[str, set[str]] = attrs.Factory(dict)
    read_up_to: int = 0

    async def make_sessions(self) -> None:
        """`/new s<n> <work>/s<n>` for each session, in the main view, as a person does."""
        for n in range(self.plan.sessions):
            self.topics.append(await self.w.new_session(f"s{n}", timeout=60))

    async def warm_up(self) -> None:
        """One answered prompt per session before the first kill: the soak is about
        restarts of sessions that have a history."""
        for n, topic in enumerate(self.topics):
            self.w.say(f"warm-up {n}", topic)
        for n, topic in enumerate(self.topics):
            await self.w.answered(topic, f"warm-up {n} (earlier", timeout=60)

    async def keep_prompting(self) -> None:
        n = 0
        while True:
            await trio.sleep(self.rng.uniform(*self.plan.prompt_every_s))
            self.read_answers()
            open_topics = [
                topic for topic in self.topics
                if len(self.outstanding.get(str(topic), ())) < self.plan.max_outstanding
            ]  # fmt: skip
            if not open_topics:
                continue
            topic = self.rng.choice(open_topics)
            text = f"soak-{n:06d}"
            n += 1
            directive = "[slow 0.3] " if self.rng.random() < self.plan.slow_share else ""
            with_file = self.rng.random() < self.plan.file_share
            document = (ATTACHED, text.encode()) if with_file else None
            sent = self.fake.user_sends(ALICE, directive + text, thread_id=topic, document=document)
            self.prompts[text] = Prompt(text, ids.post(ALICE, sent["message_id"]), str(topic), with_file)
            self.outstanding.setdefault(str(topic), set()).add(text)
            self.figures.while_down += self.down

    def read_answers(self) -> None:
        """Take answered and noticed prompts off `outstanding` (new messages only)."""
        for sent in self.fake.bot_messages(ALICE):
            if sent.message["message_id"] <= self.read_up_to:
                continue
            self.read_up_to = sent.message["message_id"]
            text, topic = _text_of(sent.message), _topic_of(sent.message)
            done = {m.group(1) for m in ANSWER.finditer(text)}
            waiting = self.outstanding.get(topic, set())
            if is_notice(text) and waiting:
                done.add(min(waiting, key=lambda t: message_id(self.prompts[t])))
            waiting -= done

    async def kill_and_restart(self, drops: int) -> None:
        """Serve for a random while (cutting the long poll `drops` times), SIGKILL, restart."""
        for _ in range(drops):
            await trio.sleep(self.rng.uniform(*self.plan.gap_s) / (drops + 1))
            # A cut falls on a waiting poll: right after the previous one the supervisor
            # may still be waiting out its 502s.
            with trio.move_on_after(10):
                await self.fake.wait_until(lambda: self.fake.polls_waiting > 0)
            if self.fake.cut_polls():
                self.fake.fail("getUpdates", 502, "Bad Gateway", count=self.rng.randint(1, 3))
                self.figures.drops += 1
        await trio.sleep(self.rng.uniform(*self.plan.gap_s) / (drops + 1))
        self.down = True
        self.w.kill()
        self.figures.kills += 1
        await spawn_polling(self.w)
        self.down = False

    def tally(self) -> Tally:
        """Each prompt's answers (the topic of each, "" for the main view), the prompts
        noticed as cut, the prompts answered with their attached file named, and those a
        restart answered again."""
        answers: dict[str, list[str]] = {}
        with_files: set[str] = set()
        notices: list[tuple[int, str]] = []
        again = AnsweredAgain(ANSWER)
        for sent in self.fake.bot_messages(ALICE):
            text, topic = _text_of(sent.message), _topic_of(sent.message)
            for match in again.answers(text, topic):
                answers.setdefault(match.group(1), []).append(topic)
                asked = self.prompts.get(match.group(1))
                if asked is not None and f"{upload_folder(asked.post_id)}/{ATTACHED} (" in (match.group(2) or ""):
                    with_files.add(asked.text)
            if is_notice(text):
                notices.append((sent.message["message_id"], topic))
        return answers, attribute_notices(notices, self.prompts, set(answers)), with_files, again

    def accounted(self) -> bool:
        answers, noticed, _files, _again = self.tally()
        return all(p in answers or p in noticed for p in self.prompts)

    async def settle(self) -> None:
        """Every prompt answered or noticed (bounded), a sentinel answered per topic, then
        every update confirmed (bounded)."""
        with trio.move_on_after(self.plan.settle_s):
            while not self.accounted():
                await trio.sleep(0.5)
        for n, topic in enumerate(self.topics):
            self.w.say(f"{SENTINEL} {n}", topic)
        with trio.move_on_after(self.plan.settle_s):
            for n, topic in enumerate(self.topics):
                while f"{SENTINEL} {n} (earlier" not in self.w.text(topic):
                    await trio.sleep(0.5)
        with trio.move_on_after(30):
            await self.fake.wait_until(lambda: not self.fake.pending_updates())

    def count(self) -> None:
        stdin = (prompt_text(line.line) or "" for line in agent_lines(self.w) if line.event == "stdin")
        count_prompts(self.figures, self.prompts, self.tally(), self.strays_in_folder, stdin)
        answers = self.tally()[0]
        self.figures.finished_unshown = sum(1 for text in finished_turns(self.w) if text in self.prompts and text not in answers)
        self.figures.given_twice = sum(1 for seqs in self.fake.delivered.values() if len(seqs) > 1)
        self.figures.unconfirmed = len(self.fake.pending_updates())

    def write_transcript(self, path: Path) -> None:
        """Alice's chat as the server keeps it, a message a line (for `--keep`)."""
        lines = []
        for sent in self.fake.chat(ALICE).messages.values():
            who = "bot" if sent.message.get("from", {}).get("id") != ALICE else "alice"
            lines.append(f"{sent.message['message_id']}\t{_topic_of(sent.message) or '-'}\t{who}\t"
                         f"{_text_of(sent.message)!r}")  # fmt: skip
        path.write_text("\n".join(lines) + "\n")

    def strays_in_folder(self, prompt: Prompt) -> int:
        return stray_files(self.w.work / f"s{self.topics.index(int(prompt.root_id))}", prompt)


def finished_turns(w: TgWorld) -> set[str]:
    """The soak prompts whose turn an agent finished (a `result` line after the prompt)."""
    finished: set[str] = set()
    running: dict[str, str] = {}  # agent process -> the prompt of its turn
    for line in agent_lines(w):
        if line.event == "stdin" and (text := prompt_text(line.line)) is not None:
            running[line.pid] = prompt_of(text)
        elif line.event == "stdout" and line.line.get("type") == "result" and line.pid in running:
            finished.add(running.pop(line.pid))
    return finished


def _text_of(message: dict[str, object]) -> str:
    return str(message.get("text") or message.get("caption") or "")


def _topic_of(message: dict[str, object]) -> str:
    """The topic's id as a string; "" for the main view."""
    return str(message.get("message_thread_id") or "")


# --- the world: the fake Bot API here, the supervisor a child process -----------------


@asynccontextmanager
async def telegram_world(tmp: Path, *, fast: bool = False) -> AsyncIterator[tuple[TgWorld, CuttableBotApi]]:
    """A fresh cuttable fake and a TgWorld around it, configured as the product is by
    default (`fast`: paced as the tests are); the supervisor is stopped on exit."""
    tmp.mkdir(parents=True, exist_ok=True)
    fake = CuttableBotApi()
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        w = TgWorld(fake, tmp, nursery)
        configure(w, fast=fast)
        try:
            yield w, fake
        finally:
            with trio.CancelScope(shield=True):
                await stop_child(w)
            nursery.cancel_scope.cancel()


def configure(w: TgWorld, *, fast: bool = False) -> None:
    """The product's defaults (`TgWorld.configure` paces and polls as tests do), or with
    `fast` the tests' pace."""
    write_toml(w.config_path, {
        "telegram": {"token": TOKEN, "allowed_user_ids": [ALICE], "api_url": w.fake.url,
                     **(FAST if fast else {})},
        "agent": {
            "command": [sys.executable, str(FAKE_AGENT)],
            "env": {"HOME": str(w.tmp / "home"), "FAKE_AGENT_LOG": str(w.agent_log)},
            "default_cwd": str(w.work),
            "shutdown_grace_s": 2,
        },
        "render": {"edit_interval_ms": DEFAULT_EDIT_INTERVAL_MS},
        "state": {"dir": str(w.tmp / "state")},
    })  # fmt: skip


async def spawn_polling(w: TgWorld) -> None:
    """Exec the supervisor; returns once its first `getUpdates` reached the server."""
    before = len(w.fake.arrived)
    process = w.spawn()
    with trio.fail_after(SPAWN_TIMEOUT_S):
        while not any(method == "getUpdates" for _seq, method in w.fake.arrived[before:]):
            if process.poll() is not None:
                raise RuntimeError(f"the supervisor exited:\n{w.log_text()[-3000:]}")
            await trio.sleep(0.005)


async def soak(plan: Plan, tmp: Path, fast: bool = False) -> TgFigures:
    started = time.monotonic()
    async with telegram_world(tmp, fast=fast) as (w, fake):
        run = TgSoak(w, fake, plan, random.Random(plan.seed))
        drops = spread(plan.drops, plan.kills, run.rng)
        await spawn_polling(w)
        await run.make_sessions()
        if plan.warm_up:
            await run.warm_up()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run.keep_prompting)
            for cycle in range(plan.kills):
                await run.kill_and_restart(drops[cycle])
            nursery.cancel_scope.cancel()
        await run.settle()
        with trio.CancelScope(shield=True):
            await stop_child(w)
        run.count()
        run.write_transcript(w.tmp / "transcript.tsv")
        state_dir = w.tmp / "state"
        with trio.move_on_after(5):  # the graceful stop ends every agent; give them a moment
            while agent_processes(state_dir):
                await trio.sleep(0.1)
        run.figures.agents_left = agent_processes(state_dir)
        run.figures.state_loads, run.figures.sessions_failed = state_figures(state_dir)
    run.figures.run_s = time.monotonic() - started
    return run.figures


def main(argv: list[str]) -> int:
    parser = arguments(kills=150, drops=40, drops_are="long polls cut by the server",
                       quick_is="5 kills, 3 cuts, 3 sessions: well under a minute")  # fmt: skip
    parser.add_argument("--fast", action="store_true",
                        help="pace 50 messages a second per chat, as the tests do, not Telegram's ~1")
    parser.add_argument("--gap", type=float, nargs=2, metavar=("MIN", "MAX"),
                        help="seconds served before each kill, at random between (default 0.1 2.0)")
    args = parser.parse_args(argv)
    plan = plan_of(args)
    if args.gap:
        plan = attrs.evolve(plan, gap_s=(args.gap[0], args.gap[1]))
    return run_and_report(args, "supervisor-soak-telegram-", lambda work: trio.run(soak, plan, work, args.fast))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
