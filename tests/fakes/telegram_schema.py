"""Check Bot API requests and results against the vendored schema (Bot API 10.1).

The schema (../shared/reference/telegram/bot-api.v10.1.json, MIT) lists every method and
type with its fields, their types and whether they are required. `request_problems`
checks one request's parameters, `result_problems` one successful result; both return
problems as strings (empty: fine) and never raise for a mismatch, so a test can check
every call in the fake server's log and assert on the list.

Strict on both sides: an unknown parameter or field is a problem (Telegram ignores an
unknown parameter silently, so a typo would never show otherwise), except the few newer
than 10.1 listed in `NEWER_THAN_SCHEMA`, with the version that added them.

The path comes from $TELEGRAM_BOTAPI_SCHEMA, else ../shared next to the repository.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from tests.fakes.telegram_botapi import Call, FilePart

DEFAULT_SCHEMA = (
    Path(__file__).resolve().parents[3] / "shared/reference/telegram/bot-api.v10.1.json"
)

# Parameters and fields from Bot API versions after the vendored schema.
NEWER_THAN_SCHEMA: dict[str, set[str]] = {
    "sendMessageDraft": {"can_stop"},  # 10.3
    "Update": {"stopped_message_generation"},  # 10.3
}


def schema_path() -> Path:
    return Path(os.environ.get("TELEGRAM_BOTAPI_SCHEMA", DEFAULT_SCHEMA))


@functools.cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_path().read_text())
    return loaded


def request_problems(method: str, params: dict[str, Any]) -> list[str]:
    spec = schema()["methods"].get(method)
    if spec is None:
        return [f"{method}: no such method in {schema()['version']}"]
    return _fields_problems(method, spec.get("fields", []), params, method)


def result_problems(method: str, result: Any) -> list[str]:
    spec = schema()["methods"][method]
    return _any_of(spec["returns"], result, f"{method} result")


def value_problems(type_name: str, value: Any, where: str = "") -> list[str]:
    return _any_of([type_name], value, where or type_name)


def _fields_problems(
    owner: str, fields: list[dict[str, Any]], value: dict[str, Any], where: str
) -> list[str]:
    problems = []
    known = {field["name"]: field for field in fields}
    newer = NEWER_THAN_SCHEMA.get(owner, set())
    for name in value:
        if name not in known and name not in newer:
            problems.append(f"{where}.{name}: not a field of {owner}")
    for name, field in known.items():
        if name not in value:
            if field["required"]:
                problems.append(f"{where}.{name}: required, missing")
            continue
        problems += _any_of(field["types"], value[name], f"{where}.{name}")
    return problems


def _any_of(types: list[str], value: Any, where: str) -> list[str]:
    """Problems of `value` against the first type it fits best (none if any fits)."""
    attempts = [_problems(type_name, value, where) for type_name in types]
    if any(not problems for problems in attempts):
        return []
    return min(attempts, key=len)


def _problems(type_name: str, value: Any, where: str) -> list[str]:
    if type_name.startswith("Array of "):
        if not isinstance(value, list):
            return [f"{where}: expected {type_name}, got {type(value).__name__}"]
        inner = type_name.removeprefix("Array of ")
        return [p for i, item in enumerate(value) for p in _any_of([inner], item, f"{where}[{i}]")]
    primitive = _PRIMITIVES.get(type_name)
    if primitive is not None:
        return [] if primitive(value) else [f"{where}: expected {type_name}, got {value!r:.40}"]
    spec = schema()["types"].get(type_name)
    if spec is None:
        return [f"{where}: unknown type {type_name}"]
    if "subtypes" in spec:
        return _any_of(spec["subtypes"], value, where)
    if not isinstance(value, dict):
        return [f"{where}: expected {type_name} (an object), got {type(value).__name__}"]
    return _fields_problems(type_name, spec.get("fields", []), value, where)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_PRIMITIVES = {
    "Integer": _is_int,
    "Float": lambda v: _is_int(v) or isinstance(v, float),
    "String": lambda v: isinstance(v, str),
    "Boolean": lambda v: isinstance(v, bool),
    "True": lambda v: v is True,
    "InputFile": lambda v: isinstance(v, FilePart),
}


def call_problems(calls: list[Call]) -> list[str]:
    """Every request and answer in a fake's log, checked (calls cut by a hang-up skipped)."""
    problems = []
    for call in calls:
        if call.status == 0:
            continue
        problems += request_problems(call.method, call.params)
        reply = call.reply
        if reply["ok"]:
            problems += result_problems(call.method, reply["result"])
        else:
            extra = set(reply) - {"ok", "error_code", "description", "parameters"}
            if extra or not isinstance(reply["error_code"], int):
                problems.append(f"{call.method}: odd error reply {reply}")
            if "parameters" in reply:
                problems += value_problems("ResponseParameters", reply["parameters"])
    return problems
