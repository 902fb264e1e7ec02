"""The core speaks its own words (issue 10): it imports no front end and no agent, and
no chat platform's vocabulary for choices (emoji names) or idempotent creates lives in it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "supervisor" / "core"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_core_imports_no_front_end_no_agent_and_no_io_shell() -> None:
    for path in sorted(CORE.glob("*.py")):
        for module in _imports(path):
            assert not module.startswith(("supervisor.chat", "supervisor.agent", "supervisor.runtime")), (path.name, module)
            assert module.split(".")[0] not in {"trio", "httpx", "trio_websocket", "hypercorn", "sqlite3"}, (path.name, module)


def test_no_emoji_name_is_a_core_concept() -> None:
    emoji_names = re.compile(r'"(\+1|-1|thumbsup|thumbsdown|white_check_mark|repeat|octagonal_sign|stop_sign|hourglass_flowing_sand)"')
    for path in sorted(CORE.glob("*.py")):
        assert not emoji_names.search(path.read_text()), path.name


def test_no_agent_or_platform_wire_word_is_a_core_concept() -> None:
    # Claude's tool names, its stderr text and rule formats, Mattermost's create key and
    # channel types belong to their adapters (agent/claude/, chat/mattermost/).
    words = re.compile(r'"(Bash|WebFetch|Write|Edit)"|No conversation found|addRules|setMode|pending_post_id|channel_type')
    for path in sorted(CORE.glob("*.py")):
        assert not words.search(path.read_text()), path.name


def test_no_front_end_limit_is_a_core_number() -> None:
    # A message's length (Mattermost's 16,383, Telegram's 4,096) and the longest create key
    # a server honours are each front end's (`ChatLink`'s attributes), handed to the core.
    numbers = re.compile(r"(?<![\w.])(16_?383|4_?096)(?![\w.])|MAX_PENDING_POST_ID")
    for path in sorted(CORE.glob("*.py")):
        assert not numbers.search(path.read_text()), path.name
