"""Who a front end was at its last start: `<state.dir>/<front end>-identity.json`.

A chat server that does not answer when the supervisor starts (a Mattermost still booting
beside it, a network not up yet) would otherwise hold up the whole start: the other front
ends, and this one's own sessions, whose posts can wait in their outboxes. So a front end
that found its server writes who it is and whom it serves here, and a later start whose
server keeps silent for `START_PATIENCE_S` starts from that instead: its first connection
then catches up what was written meanwhile, as after any outage. A refusal (a bad token)
is still a refusal, and a start that has nothing remembered still waits for the server.

Only a configuration with the same server, token and people reads it back (`key`): the
file holds a digest of them, never the token. Each front end owns its own file; it is
written atomically (`durable.write_atomically`) and only read at start.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Final

import attrs
import cattrs
import trio

from supervisor.chat import ChatUser
from supervisor.chat.fronts import People
from supervisor.durable import write_atomically

log = logging.getLogger(__name__)

START_PATIENCE_S: Final = 5.0  # a server that answers within this is asked, not remembered
VERSION: Final = 1


@attrs.frozen
class Identity:
    me: ChatUser
    people: People
    modes: tuple[str, ...] = ()  # what else the server said of the bot that the front end works by


@attrs.frozen
class _File:
    version: int
    key: str
    identity: Identity


def key(*parts: str) -> str:
    """What a remembered identity is valid for (server, token, people): a digest, so the
    token never reaches the disk."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@attrs.frozen
class Kept:
    """One front end's file, for one configuration (`key`)."""

    state_dir: Path
    front: str
    key: str

    @property
    def path(self) -> Path:
        return self.state_dir / f"{self.front}-identity.json"

    def recall(self) -> Identity | None:
        """What a start with this configuration remembered, or None (nothing, another
        configuration's, or unreadable: then the server is waited for, as at a first start)."""
        try:
            kept = cattrs.structure(json.loads(self.path.read_bytes()), _File)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, cattrs.BaseValidationError) as exc:
            log.warning("%s: what the last start learned of its server cannot be read (%s): not used", self.front, exc)
            return None
        return kept.identity if (kept.version, kept.key) == (VERSION, self.key) else None

    async def remember(self, identity: Identity) -> None:
        """Kept for the next start; a disk that refuses it costs only that (logged)."""
        # Not sorted: the people come back in the configuration's order (the first one's
        # place is where configured sessions are announced).
        raw = json.dumps(cattrs.unstructure(_File(VERSION, self.key, identity))).encode()
        try:
            await trio.to_thread.run_sync(write_atomically, self.path, raw)
        except OSError as exc:
            log.warning("%s: who we are could not be kept for the next start (%s)", self.front, exc)
