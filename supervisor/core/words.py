"""How a front end names what the core's texts speak of.

The core's texts (help, guidance, usage, refusals) mention commands and places. A person
reads them in one front end, which spells commands its own way (Telegram's `/new`, the
`!new` of Mattermost and the web chat) and has its own name for the main place and for a
session's place (a Mattermost thread, a Telegram topic). Each front end hands its `Words`
through the chat port; the defaults are the core's own notation, as Mattermost shows it.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Words:
    command: str = "!"  # the sign a typed command starts with (the core reads `!` everywhere)
    main: str = "the main DM"  # where sessions are started and listed
    thread: str = "thread"  # a session's own place
    # The front end's own lines at the end of each help: how a person answers a permission
    # request and stops a turn there (reactions, buttons), and ways of its own; "" is none.
    help_notes: str = ""
    # Where plain text reaches a session, said to text outside any; "" is the core's
    # sentence (reply in a session's place), for front ends where that is how it works.
    where_prompts_go: str = ""

    def cmd(self, form: str) -> str:
        """A command as a person types it here, in code: `cmd("new NAME")` → `` `!new NAME` ``."""
        return f"`{self.command}{form}`"
