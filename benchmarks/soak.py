#!/usr/bin/env python3
"""The kill -9 soak: `.venv/bin/python benchmarks/soak.py [--kills N --drops M | --quick]`.

Several sessions (fake agents, real processes) get prompts posted at random intervals in
their threads (a thread with 3 prompts still open gets none until one is answered or
noticed, as a person would wait), from start to end, while the supervisor (a child
process) is SIGKILLed at random moments and restarted as soon as it serves again, and its
WebSocket is dropped by the fake server at random moments in between. Then prompting stops, the last supervisor
gets time to finish, and each thread gets a sentinel prompt: once that is answered,
nothing earlier can still come. Then it stops gracefully and the figures are counted:

- answered: prompts with exactly one answer, in their own thread;
- noticed: prompts whose thread holds a notice linking them that says their turn was cut
  (or, when the agent had finished an answer too long to keep, that it may be incomplete);
- lost: prompts neither answered nor noticed (must be 0);
- duplicated: prompts answered more than once (must be 0), but for the one answer a
  restart posts again, whole, below "here it is, whole" (the agent had finished, its
  answer was being posted), counted apart: posted again, and of those, how many had
  shown whole before (the kill came as its last post reached the server);
- in another thread: answers posted outside their prompt's thread (must be 0);
- answered and noticed: a complete answer and still a cut notice (a false notice);
- delivered twice: prompts written to an agent's stdin more than once (at most once is
  the promise: a prompt may start tools that change files);
- with a file: prompts posted with an attachment (a share of them), saved before their
  turn, so a kill while one waits in the queue means saving it again after the restart;
- stray upload files: in those prompts' upload folders, any file but the one attached, or
  that one not whole (must be 0); files missing: a prompt with a file answered without it
  (must be 0);
- agent processes left after the graceful stop (must be 0); whether the state file loads,
  and how many of its sessions ended up failed.

Exit status 1 when lost, duplicated, in another thread, agents left, stray upload files or
files missing is not 0, or the state file does not load. `--json PATH` also writes the
figures. Not run in CI; its quick mode is (tests/test_soak_quick.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import attrs  # noqa: E402
import trio  # noqa: E402

from benchmarks.world import (  # noqa: E402
    agent_lines,
    bench_world,
    configure,
    prompt_text,
    seed_sessions,
    server_of,
    spawn_serving,
    stop_child,
)
from supervisor.core.uploads import upload_folder  # noqa: E402
from supervisor.runtime.store import read_state  # noqa: E402
from tests.harness import World  # noqa: E402
from tests.reposts import AnsweredAgain  # noqa: E402

# A whole answer: the prompt, the files it names, and the earlier prompts up to the "')" that
# ends the list (no prompt has one, so a part of an answer never matches).
ANSWER = re.compile(r"echo #\d+: (soak-\d+)(\n\nAttached files[^\n]*(?:\n- [^\n]*)+)? \(earlier: (?:none|.*?')\)", re.S)
ATTACHED = "notes.txt"
LINK = re.compile(r"/_redirect/pl/([a-z0-9]{26})")
SENTINEL = "sentinel"
DEFAULT_SEED = 20261202


@attrs.frozen
class Plan:
    kills: int
    drops: int
    sessions: int = 4
    gap_s: tuple[float, float] = (0.1, 2.0)  # serving -> the next kill
    prompt_every_s: tuple[float, float] = (0.1, 0.8)
    # A person waits for answers: a thread gets no new prompt while this many of its prompts
    # are neither answered nor noticed. Without a bound the backlog grows on a busy machine,
    # and every restart re-reads it (the catch-up starts at the oldest unhandled post).
    max_outstanding: int = 3
    slow_share: float = 0.25  # prompts streamed over a while ([slow 0.3]): more cut mid-answer
    file_share: float = 0.2  # prompts posted with a file attached
    settle_s: float = 300.0  # after the last kill: every prompt accounted for, at most this
    warm_up: bool = True  # one answered prompt per session before the first kill
    seed: int = DEFAULT_SEED


@attrs.frozen
class Prompt:
    text: str
    post_id: str
    root_id: str
    with_file: bool = False


@attrs.define
class Figures:
    kills: int = 0
    drops: int = 0
    prompts: int = 0
    answered: int = 0
    noticed: int = 0
    lost: int = 0
    duplicated: int = 0
    other_thread: int = 0
    answered_and_noticed: int = 0
    shown_again: int = 0  # finished answers a restart posted again, whole
    shown_twice: int = 0  # ... of which had shown whole already (the kill came as it did)
    delivered_twice: int = 0
    with_file: int = 0
    stray_files: int = 0
    files_missing: int = 0
    agents_left: int = 0
    sessions_failed: int = 0
    state_loads: bool = False
    run_s: float = 0.0

    @property
    def ok(self) -> bool:
        bad = self.lost + self.duplicated + self.other_thread + self.agents_left + self.stray_files + self.files_missing
        return bad == 0 and self.state_loads

    def report(self, drops: str = "WebSocket drops", place: str = "thread") -> str:
        """The figures, one a line; `drops` and `place` name the front end's own."""
        return "\n".join([
            f"kills                      {self.kills}",
            f"{drops:<27}{self.drops}",
            f"prompts                    {self.prompts}",
            f"{'answered once, own ' + place:<27}{self.answered}",
            f"noticed as cut             {self.noticed}",
            f"lost                       {self.lost}",
            f"duplicated answers         {self.duplicated}",
            f"{'answers in another ' + place:<27}{self.other_thread}",
            f"answered and noticed       {self.answered_and_noticed}",
            f"posted again by a restart  {self.shown_again}",
            f"  of which had shown whole {self.shown_twice}",
            f"delivered to an agent 2x+  {self.delivered_twice}",
            f"with a file                {self.with_file}",
            f"stray upload files         {self.stray_files}",
            f"answered without its file  {self.files_missing}",
            f"agent processes left       {self.agents_left}",
            f"sessions failed            {self.sessions_failed}",
            f"state file loads           {'yes' if self.state_loads else 'NO'}",
            f"run time                   {self.run_s:.0f} s",
        ])


@attrs.define
class Soak:
    """One run. Invariant: `prompts` holds every prompt posted, by text."""

    w: World
    plan: Plan
    rng: random.Random
    roots: list[str]
    prompts: dict[str, Prompt] = attrs.Factory(dict)
    figures: Figures = attrs.Factory(Figures)
    # What the prompter knows, read incrementally from the server's post log: prompts not
    # yet answered or noticed, by thread; the prompt text of each prompt post id.
    outstanding: dict[str, set[str]] = attrs.Factory(dict)
    text_of: dict[str, str] = attrs.Factory(dict)
    read_up_to: int = 0

    async def warm_up(self) -> None:
        """One answered prompt per session before the first kill, so each conversation
        exists: the soak is about restarts of sessions that have a history."""
        with trio.fail_after(60):
            for n, root in enumerate(self.roots):
                await self.w.say(f"warm-up {n}", root)
            for n, root in enumerate(self.roots):
                while f"warm-up {n} (earlier" not in self.w.thread_text(root):
                    await trio.sleep(0.1)

    async def keep_prompting(self) -> None:
        n = 0
        while True:
            await trio.sleep(self.rng.uniform(*self.plan.prompt_every_s))
            self.read_answers()
            open_threads = [
                root for root in self.roots
                if len(self.outstanding.get(root, ())) < self.plan.max_outstanding
            ]
            if not open_threads:
                continue
            root = self.rng.choice(open_threads)
            text = f"soak-{n:06d}"
            n += 1
            directive = "[slow 0.3] " if self.rng.random() < self.plan.slow_share else ""
            with_file = self.rng.random() < self.plan.file_share
            with trio.CancelScope(shield=True):  # posted means counted
                server = server_of(self.w)
                files = [server.upload_as("alice", ATTACHED, text.encode())] if with_file else []
                post = await server.user_post("alice", directive + text, root_id=root, file_ids=files)
                self.prompts[text] = Prompt(text, str(post["id"]), root, with_file)
                self.text_of[str(post["id"])] = text
                self.outstanding.setdefault(root, set()).add(text)

    def read_answers(self) -> None:
        """Take answered and noticed prompts off `outstanding` (new server posts only)."""
        server = server_of(self.w)
        fresh = server.posts[self.read_up_to :]
        self.read_up_to += len(fresh)
        for seen in fresh:
            if seen.user_id != server.bot.id:
                continue
            done = {m.group(1) for m in ANSWER.finditer(seen.message)}
            if "cut" in seen.message.lower():
                done |= {self.text_of.get(post_id, "") for post_id in LINK.findall(seen.message)}
            for text in done:
                if text in self.prompts:
                    self.outstanding[self.prompts[text].root_id].discard(text)

    async def kill_and_restart(self, drops: int) -> None:
        """Serve for a random while (dropping the socket `drops` times), SIGKILL, restart."""
        server = server_of(self.w)
        for _ in range(drops):
            await trio.sleep(self.rng.uniform(*self.plan.gap_s) / (drops + 1))
            # A drop falls on a live connection: right after the previous drop the socket
            # may still be reconnecting, and skipping then left a run short of its drops.
            with trio.move_on_after(10):
                await server.wait_for_websocket()
            if server.websockets(server.bot.id):
                server.drop_sockets()
                self.figures.drops += 1
        await trio.sleep(self.rng.uniform(*self.plan.gap_s) / (drops + 1))
        self.w.kill()
        self.figures.kills += 1
        with trio.fail_after(30):
            await server.wait_until(lambda: server.websockets(server.bot.id) == 0)
        await spawn_serving(self.w)

    def tally(self) -> Tally:
        """Each prompt's answers (the thread of each), the prompts noticed as cut, the
        prompts answered with their attached file named, and those a restart answered again."""
        by_id = {p.post_id: p for p in self.prompts.values()}
        answers: dict[str, list[str]] = {}
        noticed: set[str] = set()
        with_files: set[str] = set()
        again = AnsweredAgain(ANSWER)
        for post in self.w.bot_posts():
            message, root = str(post["message"]), str(post["root_id"])
            for match in again.answers(message, root):
                answers.setdefault(match.group(1), []).append(root)
                asked = self.prompts.get(match.group(1))
                if asked is not None and f"{upload_folder(asked.post_id)}/{ATTACHED} (" in (match.group(2) or ""):
                    with_files.add(asked.text)
            # Both notices a restart leaves tell the person: "cut" (the turn was running)
            # and "may be incomplete" (the agent had finished; its answer was being posted).
            if "cut" in message.lower() or "may be incomplete" in message:
                for post_id in LINK.findall(message):
                    prompt = by_id.get(post_id)
                    if prompt is not None and prompt.root_id == post["root_id"]:
                        noticed.add(prompt.text)
        return answers, noticed, with_files, again

    def accounted(self) -> bool:
        answers, noticed, _files, _again = self.tally()
        return all(p in answers or p in noticed for p in self.prompts)

    async def settle(self) -> None:
        """Every prompt answered or noticed (bounded), then a sentinel answered per thread."""
        with trio.move_on_after(self.plan.settle_s):
            while not self.accounted():
                await trio.sleep(0.5)
        for n, root in enumerate(self.roots):
            await self.w.say(f"{SENTINEL} {n}", root)
        with trio.move_on_after(self.plan.settle_s):
            for n, root in enumerate(self.roots):
                while f"{SENTINEL} {n} (earlier" not in self.w.thread_text(root):
                    await trio.sleep(0.5)

    def count(self) -> None:
        stdin = (prompt_text(line.line) or "" for line in agent_lines(self.w) if line.event == "stdin")
        count_prompts(self.figures, self.prompts, self.tally(), self.strays_in_folder, stdin)

    def strays_in_folder(self, prompt: Prompt) -> int:
        cwd = self.w.work / f"s{self.roots.index(prompt.root_id)}"  # as `seed_sessions` made them
        return stray_files(cwd, prompt)


# What the messages show: each prompt's answers (the thread of each), the prompts noticed
# as cut, those answered with their file named, and the answers restarts posted again.
Tally = tuple[dict[str, list[str]], set[str], set[str], AnsweredAgain]


def count_prompts(
    f: Figures,
    prompts: dict[str, Prompt],
    tally: Tally,
    strays: Callable[[Prompt], int],
    stdin: Iterable[str],
) -> None:
    """The per-prompt figures from a tally (each prompt's answers by thread, the prompts
    noticed, those answered with their file named), the stray files of each prompt with a
    file, and the texts written to the agents' stdin."""
    answers, noticed, with_files, again = tally
    f.prompts = len(prompts)
    for text, prompt in prompts.items():
        threads = answers.get(text, [])
        if again.reposts[text]:  # posted again whole, below a line that says why
            f.shown_again += 1
            f.shown_twice += text in again.shown_before
            threads = list(threads)
            for _ in range(min(again.explained(text), threads.count(prompt.root_id) - 1)):
                threads.remove(prompt.root_id)
        f.answered += threads == [prompt.root_id]
        f.noticed += text in noticed
        f.lost += not threads and text not in noticed
        f.duplicated += len(threads) > 1
        f.other_thread += sum(1 for root in threads if root != prompt.root_id)
        f.answered_and_noticed += bool(threads) and text in noticed
        if prompt.with_file:
            f.with_file += 1
            f.files_missing += bool(threads) and text not in with_files
            f.stray_files += strays(prompt)
    delivered = Counter(prompt_of(text) for text in stdin)
    f.delivered_twice = sum(1 for text, n in delivered.items() if text in prompts and n > 1)


def stray_files(cwd: Path, prompt: Prompt) -> int:
    """Files in the prompt's upload folder (under its session's `cwd`) but the one
    attached, whole (its text)."""
    folder = cwd / upload_folder(prompt.post_id)
    found = {p.name: p for p in folder.iterdir()} if folder.is_dir() else {}
    attached = found.pop(ATTACHED, None)
    return len(found) + (attached is not None and attached.read_bytes() != prompt.text.encode())


def prompt_of(text: str) -> str:
    """The soak prompt in an agent's stdin text (directives stripped)."""
    match = re.search(r"soak-\d+", text)
    return match.group(0) if match else ""


def agent_processes(state_dir: Path) -> int:
    """Processes whose environment marks them as agents of this state dir."""
    markers = {f"SUPERVISOR_STATE_DIR={path}".encode() for path in (state_dir, state_dir.resolve())}
    found = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = set((entry / "environ").read_bytes().split(b"\0"))
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if markers & environ and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found += 1
    return found


def state_figures(state_dir: Path) -> tuple[bool, int]:
    """Whether the state file loads, and how many of its sessions have failed."""
    try:
        on_disk = read_state(state_dir)  # the snapshot and the journal's latest changes
    except Exception:  # any failure to read or decode is the figure
        return False, 0
    if not on_disk.found or on_disk.problems:
        return False, 0
    state = on_disk.state
    return True, sum(1 for record in state.sessions.values() if record.status == "failed")


async def soak(plan: Plan, tmp: Path) -> Figures:
    started = time.monotonic()
    async with bench_world(tmp) as w:
        configure(w)
        roots = await seed_sessions(w, plan.sessions)
        run = Soak(w, plan, random.Random(plan.seed), roots)
        drops = spread(plan.drops, plan.kills, run.rng)
        await spawn_serving(w)
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
        state_dir = w.tmp / "state"
        with trio.move_on_after(5):  # the graceful stop ends every agent; give them a moment
            while agent_processes(state_dir):
                await trio.sleep(0.1)
        run.figures.agents_left = agent_processes(state_dir)
        run.figures.state_loads, run.figures.sessions_failed = state_figures(state_dir)
    run.figures.run_s = time.monotonic() - started
    return run.figures


def spread(drops: int, kills: int, rng: random.Random) -> list[int]:
    """How many drops fall in each kill cycle: `drops` in all, at random cycles."""
    per_cycle = [0] * max(kills, 1)
    for _ in range(drops):
        per_cycle[rng.randrange(len(per_cycle))] += 1
    return per_cycle


def arguments(*, kills: int, drops: int, drops_are: str, quick_is: str) -> argparse.ArgumentParser:
    """The options every soak takes (this one's, the Telegram one's)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=kills, help=f"SIGKILLs of the supervisor (default {kills})")
    parser.add_argument("--drops", type=int, default=drops, help=f"{drops_are} (default {drops})")
    parser.add_argument("--sessions", type=int, default=4, help="sessions, one fake agent each (default 4)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--no-warm-up", action="store_true", help="kill from the start, before any conversation exists")
    parser.add_argument("--quick", action="store_true", help=quick_is)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, state)")
    return parser


def plan_of(args: argparse.Namespace) -> Plan:
    if args.quick:
        return Plan(kills=5, drops=3, sessions=3, settle_s=60.0, seed=args.seed)
    return Plan(kills=args.kills, drops=args.drops, sessions=args.sessions, seed=args.seed,
                warm_up=not args.no_warm_up)  # fmt: skip


def run_and_report(args: argparse.Namespace, prefix: str, run: Callable[[Path], Figures]) -> int:
    """Run a soak in a scratch directory, print its figures (and write them with --json);
    the exit status says whether they are all right."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        figures = run(work)
    finally:
        if args.keep:
            print(f"scratch kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(figures.report())
    if args.json:
        args.json.write_text(json.dumps({**attrs.asdict(figures), "quick": args.quick, "ok": figures.ok}))
    return 0 if figures.ok else 1


def main(argv: list[str]) -> int:
    parser = arguments(kills=1000, drops=100, drops_are="WebSocket drops by the server",
                       quick_is="5 kills, 3 drops, 3 sessions: seconds")  # fmt: skip
    args = parser.parse_args(argv)
    plan = plan_of(args)
    return run_and_report(args, "supervisor-soak-", lambda work: trio.run(soak, plan, work))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
