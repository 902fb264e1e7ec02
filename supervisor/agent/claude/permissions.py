"""What "allow for this session" means for Claude Code, computed from the CLI's own offer.

The CLI sends, with each `can_use_tool` request, `permission_suggestions`: rules it would
add (`addRules`: a Bash command, a fetched domain...) or a mode it would switch to
(`setMode acceptEdits`). This module turns that offer into the port's `AlwaysAllow`: the
updates to send back with the allow (applied to this session only, never written to
disk), and the rules to keep with the session in the CLI's notation (`Bash(npm test)`),
which a relaunched CLI gets again with `--allowedTools`. Pure; never does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from supervisor.agent.claude.tools import KEY_ARGUMENTS, SHELL_TOOLS
from supervisor.core.agent_events import JSON, AlwaysAllow, PermissionAsked


def session_updates(suggestions: Sequence[JSON]) -> tuple[JSON, ...]:
    """The CLI's own suggestions, applied to this session only.

    Where the CLI offers exact rules (addRules: a Bash command, a fetched domain...) only
    those are sent: the mode change it offers next to them for a Bash call (setMode
    acceptEdits) would let every file-changing command in the directory through unasked,
    `rm` included. A mode change is sent when it is the whole offer (Write, Edit: "allow
    all edits during this session")."""
    offered = [s for s in suggestions if s.get("type") == "addRules"]
    if not offered:
        offered = [s for s in suggestions if s.get("type") == "setMode"]
    return tuple({**s, "destination": "session"} for s in offered)


def allowed_tool_rules(updates: Sequence[JSON]) -> tuple[str, ...]:
    """The permission rules in the CLI's own notation (`Bash(npm test)`, `WebFetch`) for
    the rules that updates add: what `--allowedTools` takes."""
    rules: list[str] = []
    for update in updates:
        if update.get("type") != "addRules" or update.get("behavior", "allow") != "allow":
            continue
        for rule in update.get("rules") or ():
            if isinstance(rule, dict) and rule.get("toolName"):
                content = rule.get("ruleContent")
                rules.append(f"{rule['toolName']}({content})" if content else str(rule["toolName"]))
    return tuple(rules)


def always_allow(suggestions: Sequence[JSON]) -> AlwaysAllow | None:
    """None where the CLI suggests nothing to keep (an MCP tool, a directory only): an
    "allow for this session" would then allow this call alone, and the next ask again."""
    updates = session_updates(suggestions)
    if not updates:
        return None
    mode = next((str(u["mode"]) for u in updates if u.get("type") == "setMode"), "")
    return AlwaysAllow(updates=updates, rules=allowed_tool_rules(updates), mode=mode)


def permission_asked(
    request_id: str,
    tool_name: str,
    tool_input: JSON,
    *,
    tool_use_id: str = "",
    description: str = "",
    suggestions: Sequence[JSON] = (),
) -> PermissionAsked:
    """A `can_use_tool` request in the port's words, its "always" worked out."""
    return PermissionAsked(
        request_id=request_id,
        tool_name=tool_name,
        input=tool_input,
        tool_use_id=tool_use_id,
        description=description,
        suggestions=tuple(suggestions),
        always=always_allow(suggestions),
        key_argument=KEY_ARGUMENTS.get(tool_name, ""),
        key_language=SHELL_TOOLS.get(tool_name, ""),
    )
