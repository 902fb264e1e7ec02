"""A stand-in core for the web chat tests: answers through the front's ops only.

Not the supervisor's core (issue 10 wires that): just enough behaviour to drive the page
end to end, in the port's words. It reads `front.events` and answers:
- main thread: `!new NAME [CWD] [agent=A] [persona=P]` opens a thread (refused if a session
  of that name runs); `!help`; else a hint;
- in a thread: a prompt is answered by streaming its words back (with a tool line, a
  thinking quote and a completion line); `run CMD` asks a permission choice first
  (allow for this session is remembered); `hostile` answers with hostile Markdown;
  `long N` streams N words slowly; `markdown` streams a table and a code block; attachments are fetched and their size reported;
  `!status` answers at once; `get NAME` sends a file; Stop interrupts the running turn.
Every event is marked handled once acted on, as the real core will.
"""

from __future__ import annotations

import shlex
from collections import defaultdict

import attrs
import trio

from supervisor.chat.web.front import WebChat
from supervisor.chat.web.port import (
    MAIN_THREAD,
    WEB_PLACE,
    ChoiceMade,
    MessagePosted,
    OptionKind,
    PageEvent,
    StopAsked,
    ThreadOpened,
    ThreadRef,
)

HOSTILE = (
    "Look: <script>window.__pwned = 1</script> and "
    '<img src="x" onerror="window.__pwned = 2"> and '
    "[click me](javascript:window.__pwned=3) and "
    '<a href="javascript:window.__pwned=4">raw link</a> '
    '<svg onload="window.__pwned=5"></svg> <iframe src="javascript:window.__pwned=6"></iframe>'
)
MARKDOWN = (
    "Here is a table:\n\n| file | lines |\n|---|---|\n| app.py | 120 |\n| db.py | 80 |\n\n"
    "and some code:\n\n```python\ndef hello():\n    return 'world'\n```\n\nThat is all."
)
OPTIONS: tuple[tuple[OptionKind, str], ...] = (("allow_once", "Allow"), ("allow_always", "Allow for this session"), ("reject", "Deny"))


@attrs.define
class Session:
    thread: ThreadRef
    name: str
    prompts: trio.MemorySendChannel[MessagePosted]
    turn: trio.CancelScope | None = None
    allowed_always: bool = False
    turns: int = 0


@attrs.define
class StandInCore:
    front: WebChat
    word_delay: float = 0.05
    sessions: dict[str, Session] = attrs.field(factory=dict)
    choices: dict[str, trio.MemorySendChannel[str]] = attrs.field(factory=dict)
    received: list[tuple[str, bytes]] = attrs.field(factory=list)  # attachments seen
    prompts_seen: list[str] = attrs.field(factory=list)
    ran: list[str] = attrs.field(factory=list)  # commands "run" after an Allow
    opened: list[str] = attrs.field(factory=list)  # threads the page opened (ThreadOpened)
    counts: dict[str, int] = attrs.field(factory=lambda: defaultdict(int))
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            async for event in self.front.events:
                await self._dispatch(event)

    async def _dispatch(self, event: PageEvent) -> None:
        match event:
            case ThreadOpened(thread=thread):
                self.opened.append(thread.thread_id)
            case MessagePosted(thread=None):
                await self._command(event)
            case MessagePosted(thread=ThreadRef() as thread):
                self.prompts_seen.append(event.text)
                await self._session(thread).prompts.send(event)
            case ChoiceMade(message_id=message_id, option_kind=kind):
                if message_id in self.choices:
                    self.choices.pop(message_id).send_nowait(kind)
                await self.front.handled(event.id)
            case StopAsked(thread=thread):
                session = self.sessions.get(thread.thread_id)
                if session is not None and session.turn is not None:
                    session.turn.cancel()
                await self.front.handled(event.id)

    def _session(self, thread: ThreadRef, name: str = "") -> Session:
        if thread.thread_id not in self.sessions:
            send, receive = trio.open_memory_channel[MessagePosted](100)
            session = Session(thread, name or thread.thread_id, send)
            self.sessions[thread.thread_id] = session
            assert self._nursery is not None
            self._nursery.start_soon(self._session_loop, session, receive)
        return self.sessions[thread.thread_id]

    async def _command(self, event: MessagePosted) -> None:
        main = ThreadRef(WEB_PLACE, MAIN_THREAD)
        words = shlex.split(event.text)
        if words[:1] == ["!new"] and len(words) >= 2 and words[1] in {s.name for s in self.sessions.values()}:
            # As the real core does: one live session per name.
            await self.front.create(main, f"A session named **{words[1]}** already runs.", f"reply:{event.id}")
        elif words[:1] == ["!new"] and len(words) >= 2:
            name = words[1]
            options = dict(w.split("=", 1) for w in words[2:] if "=" in w)
            plain = [w for w in words[2:] if "=" not in w]
            cwd = plain[0] if plain else "~"
            agent = options.get("agent", "claude")
            header = f"**{name}** · `{cwd}` · {agent} · started now"
            thread = await self.front.open_thread(
                WEB_PLACE, name, header, f"new:{event.id}", agent=agent, cwd=cwd
            )
            self._session(thread, name)
            await self.front.update_thread(thread, state="idle")
            await self.front.create(main, f"Started session **{name}**.", f"reply:{event.id}")
        elif words[:1] == ["!help"]:
            await self.front.create(main, "Commands: `!new NAME`, `!help`", f"reply:{event.id}")
        else:
            await self.front.create(
                main, "Prompts go into a session thread; `!new NAME` starts one.", f"reply:{event.id}"
            )
        await self.front.handled(event.id)

    async def _session_loop(
        self, session: Session, prompts: trio.MemoryReceiveChannel[MessagePosted]
    ) -> None:
        async for prompt in prompts:
            await self.front.handled(prompt.id)  # "written to the agent"
            with trio.CancelScope() as scope:
                session.turn = scope
                await self.front.update_thread(session.thread, state="busy")
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._typing, session.thread)
                    await self._turn(session, prompt)
                    nursery.cancel_scope.cancel()
            session.turn = None
            session.turns += 1
            if scope.cancelled_caught:
                await self.front.create(
                    session.thread, "⏹️ Interrupted. · 0s · $0.00", f"stopped:{prompt.id}"
                )
            await self.front.update_thread(session.thread, state="idle")

    async def _typing(self, thread: ThreadRef) -> None:
        while True:
            await self.front.typing(thread)
            await trio.sleep(1)

    async def _turn(self, session: Session, prompt: MessagePosted) -> None:
        thread, key = session.thread, prompt.id
        text = prompt.text.strip()
        self.counts[text] += 1
        if text == "!status":
            await self.front.create(thread, f"state: busy · turns: {session.turns}", f"a:{key}")
            return
        if prompt.attachments:
            lines = []
            for ref in prompt.attachments:
                data = await self.front.fetch_attachment(ref)
                self.received.append((ref.name, data))
                lines.append(f"received `{ref.name}`: {len(data)} bytes")
            await self.front.create(thread, "\n".join(lines), f"a:{key}")
            return
        if text.startswith("run "):
            await self._permission(session, text.removeprefix("run "), key)
            return
        if text == "markdown":
            chunks = [MARKDOWN[i : i + 12] for i in range(0, len(MARKDOWN), 12)]
            await self._stream(thread, chunks, key, sep="")
            return
        if text.startswith("get "):
            name = text.removeprefix("get ")
            await self.front.send_file(thread, name, f"contents of {name}\n".encode(), f"f:{key}")
            return
        if text == "hostile":
            await self.front.create(thread, HOSTILE, f"a:{key}")
            return
        if text.startswith("long "):
            words = [f"word{i}" for i in range(int(text.split()[1]))]
        else:
            words = f"You said: {text}".split()
        await self._stream(thread, words, key)

    async def _stream(
        self, thread: ThreadRef, words: list[str], key: str, sep: str = " "
    ) -> None:
        message_id = (await self.front.create(thread, "> 💭 thinking about it", f"a:{key}")).id
        shown = "> 💭 thinking about it\n\n🔧 `Bash` `echo hello`\n\n"
        for word in words:
            await trio.sleep(self.word_delay)
            shown += word + sep
            await self.front.edit(message_id, shown)
        await self.front.edit(message_id, shown + "\n\n✅ Done · 1s · $0.01")

    async def _permission(self, session: Session, command: str, key: str) -> None:
        thread = session.thread
        if not session.allowed_always:
            send, receive = trio.open_memory_channel[str](1)
            choice = await self.front.show_choice(
                thread, f"🔐 **Bash** wants to run `{command}`", OPTIONS, f"p:{key}"
            )
            self.choices[choice] = send
            kind = await receive.receive()
            outcome = {
                "allow_once": "✅ Allowed",
                "allow_always": "✅ Allowed for this session",
                "reject": "❌ Denied",
            }[kind]
            await self.front.settle_choice(choice, outcome)
            if kind == "reject":
                await self.front.create(thread, f"Did not run `{command}`.", f"a:{key}")
                return
            session.allowed_always = kind == "allow_always"
        self.ran.append(command)
        await self.front.create(thread, f"Ran `{command}`.", f"a:{key}")
