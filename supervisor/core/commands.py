"""Chat commands: parse what a person typed into a command, or say why it is not one.

Pure functions only. The main place and a session's place accept different commands; which
is which is decided here so the router and the sessions never look at raw text.
"""

from __future__ import annotations

import re
import shlex

import attrs

from supervisor.core.words import Words

NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")  # the whole name (`fullmatch`)
# Our own verbs in a thread: anything else starting with "!" is a prompt.
THREAD_VERBS = frozenset({"!stop", "!status", "!end", "!help", "!sessions", "!get"})


@attrs.frozen
class Help:
    pass


@attrs.frozen
class ListSessions:
    pass


@attrs.frozen
class NewSession:
    name: str
    cwd: str | None = None
    persona: str | None = None
    agent: str | None = None  # a configured agent's name; None: the default agent
    resume: str | None = None  # an existing conversation of that agent to continue


@attrs.frozen
class ListAgents:
    pass


@attrs.frozen
class EndSession:
    name: str | None = None  # None: the session of the thread it was typed in


@attrs.frozen
class Stop:
    pass


@attrs.frozen
class Status:
    pass


@attrs.frozen
class GetFile:
    path: str


@attrs.frozen
class BadCommand:
    """Looked like a command but is not a valid one: what is wrong (`reason`), and the
    forms that would be right (`usage`, without the sign a command starts with: each front
    end spells them its own way when `text` is shown)."""

    reason: str = ""
    usage: tuple[str, ...] = ()
    example: str = ""  # one right form, written out (spelled like `usage`); "" is none

    def text(self, words: Words) -> str:
        """What the person is told, its commands spelled in `words`."""
        if not self.usage:
            return self.reason
        forms = ", ".join(words.cmd(form) for form in self.usage)
        right = f"usage: {forms}" if len(self.usage) == 1 else f"the commands here are {forms}"
        right += f", e.g. {words.cmd(self.example)}" if self.example else ""
        return f"{self.reason}; {right}" if self.reason else right


MainCommand = Help | ListSessions | NewSession | EndSession | ListAgents
ThreadCommand = Help | Stop | Status | EndSession | GetFile | ListSessions

NEW_FORM = "new NAME [CWD] [agent=A] [persona=P] [resume=ID]"
# Commands are split into words as a shell does: how to write a name that has spaces or quotes.
QUOTING = """a name with spaces or quotes goes in quotes, as in a shell: `"my file.txt"`, `"it's.txt"`"""
MAIN_FORMS = ("help", "sessions", NEW_FORM, "end NAME", "agents")


def is_command(text: str) -> bool:
    return text.lstrip().startswith("!")


def _words(text: str) -> list[str] | BadCommand:
    try:
        return shlex.split(text.strip())
    except ValueError as exc:  # an unbalanced quote, a trailing backslash
        return BadCommand(f"could not read that command ({exc}): {QUOTING}")


def parse_main_command(text: str) -> MainCommand | BadCommand | None:
    """A command typed as a root post in the main DM; None when the text is no command."""
    if not is_command(text):
        return None
    words = _words(text)
    if isinstance(words, BadCommand):
        return words
    verb, args = words[0].lower(), words[1:]
    if verb == "!help" and not args:
        return Help()
    if verb == "!sessions" and not args:
        return ListSessions()
    if verb == "!agents" and not args:
        return ListAgents()
    if verb == "!new":
        return _parse_new(args)
    if verb == "!end":
        if len(args) != 1:
            return BadCommand(usage=("end NAME",))
        return EndSession(args[0])
    return BadCommand(f"unknown command `{words[0]}`", MAIN_FORMS)


def _parse_new(args: list[str]) -> NewSession | BadCommand:
    options: dict[str, str | None] = {"persona": None, "agent": None, "resume": None}
    rest: list[str] = []
    for arg in args:
        key, _, value = arg.partition("=")
        if key in options and arg.startswith(key + "="):
            if not value:
                what = {"persona": "a persona name", "agent": "an agent name", "resume": "a conversation id"}[key]
                return BadCommand(f"`{key}=` needs {what}")
            if key == "resume" and (value.startswith("-") or not all(c.isprintable() and not c.isspace() for c in value)):
                # It reaches an agent's command line: it must never read as a flag there.
                return BadCommand(
                    "`resume=` takes a conversation id as the agent gave it: one word, not starting"
                    " with `-`, with no spaces or control characters"
                )
            options[key] = value
        else:
            rest.append(arg)
    persona = options["persona"]
    if not 1 <= len(rest) <= 2:
        return BadCommand(usage=(NEW_FORM,))
    name = rest[0]
    if not NAME_RE.fullmatch(name):
        return BadCommand(
            f"`{name}` is not a valid session name: use 1-64 letters, digits, `-`, `_` or `.`"
        )
    return NewSession(
        name=name, cwd=rest[1] if len(rest) == 2 else None, persona=persona, agent=options["agent"], resume=options["resume"]
    )


def parse_thread_command(text: str) -> ThreadCommand | BadCommand | None:
    """A command typed inside a session thread; None when the text is a prompt."""
    if not is_command(text) or text.split(maxsplit=1)[0].lower() not in THREAD_VERBS:
        return None  # a prompt, however it is quoted (`!important: don't …`)
    words = _words(text)
    if isinstance(words, BadCommand):
        return words
    verb, args = words[0].lower(), words[1:]
    simple: dict[str, ThreadCommand] = {
        "!stop": Stop(),
        "!status": Status(),
        "!end": EndSession(),
        "!help": Help(),
        "!sessions": ListSessions(),
    }
    if verb in simple:
        if not args:
            return simple[verb]
        # Our verb with more after it (`!stop now`) is still meant for us: sent to the agent
        # as a prompt, a stop would stop nothing. A session by name ends in the main place.
        why = "here it ends this session, and takes no name" if verb == "!end" else "nothing follows this command"
        return BadCommand(why, (verb[1:],))
    if verb == "!get":
        if len(args) != 1:
            return BadCommand(
                "`PATH` names one file inside the session's directory, in quotes if it has spaces or quotes",
                ("get PATH",),
                'get "my file.txt"',
            )
        return GetFile(args[0])
    # Anything else starting with "!" is most likely meant for the agent (e.g. "!important"):
    # a thread is for prompts, so only our own verbs are taken as commands.
    return None
