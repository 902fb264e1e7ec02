"""The ACP wire format: JSON-RPC 2.0 frames, one compact JSON object per line.

Owns the shapes of the frames we read and write (camelCase on the wire, snake_case here)
and the ONE cattrs converter that turns them into attrs objects and back. Unknown fields
are ignored and unknown `sessionUpdate` kinds come out as `UnknownUpdate`, because agents
add both freely (OpenCode sends `usage` in the prompt response, which only the unstable
schema has). A field the schema lets be null is Optional here, and where the schema says
"default on error" (`x-deserialize-default-on-error`, `x-deserialize-skip-invalid-items`)
a value that does not fit is read as the default, or its list keeps the items that fit:
one odd field must not cost a whole frame. Never does I/O and never decides what a frame
means for a session: that is `client.py`. Shapes follow
../shared/reference/opencode-acp/schema.v1.json.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from supervisor import json_text

JSON = dict[str, Any]
RequestId = int | str
T = TypeVar("T")

PROTOCOL_VERSION = 1


class FrameError(ValueError):
    """A line that is not a JSON-RPC 2.0 frame (or not one we can read)."""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


converter = cattrs.Converter(forbid_extra_keys=False, omit_if_default=True)
# Every flag we read is "default false on error" in the schema: only `true` says yes
# (cattrs would read "false", or any other non-empty value, as True).
converter.register_structure_hook(bool, lambda value, _: value is True)


def _text(value: Any, _: Any) -> str:
    # cattrs calls str() on anything, and null would be read as the text "None": null is
    # no text (a field with a default reads it as that, else the frame is refused).
    if value is None:
        raise TypeError("null where the schema wants a string")
    return str(value)


converter.register_structure_hook(str, _text)

# Field metadata, as the schema marks the field: a value that does not fit is read as the
# field's default; a list keeps the items that fit (not a list: the default).
DEFAULT_ON_ERROR = {"default_on_error": True}
SKIP_INVALID_ITEMS = {"skip_invalid_items": True}
_STRUCTURE_ERRORS = (cattrs.BaseValidationError, TypeError, ValueError, KeyError, AttributeError)


def _structure_factory(cls: type) -> Any:
    attrs.resolve_types(cls)  # the lenient hooks need the fields' types, not their strings
    overrides = {
        a.name: override(rename=_camel(a.name), struct_hook=_lenient_hook(a))
        for a in attrs.fields(cls)
    }
    return make_dict_structure_fn(cls, converter, **overrides)  # type: ignore[arg-type]


def _lenient_hook(field: attrs.Attribute[Any]) -> Callable[[Any, Any], Any] | None:
    if field.metadata.get("skip_invalid_items"):
        item_type = _item_type(field.type)

        def items_that_fit(value: Any, _: Any) -> Any:
            if not isinstance(value, list):
                return _default(field)  # null too: None where the list may be null
            items = []
            for item in value:
                try:
                    items.append(converter.structure(item, item_type))
                except _STRUCTURE_ERRORS:
                    continue
            return items

        return items_that_fit
    if field.metadata.get("default_on_error"):
        field_type: Any = field.type

        def or_default(value: Any, _: Any) -> Any:
            try:
                return converter.structure(value, field_type)
            except _STRUCTURE_ERRORS:
                return _default(field)

        return or_default
    if field.default is not attrs.NOTHING and not _takes_null(field.type):
        non_null_type: Any = field.type

        def null_as_default(value: Any, _: Any) -> Any:
            # null said of a field the schema gives no null: as if the field were absent
            return _default(field) if value is None else converter.structure(value, non_null_type)

        return null_as_default
    return None


def _takes_null(field_type: Any) -> bool:
    return field_type is Any or type(None) in typing.get_args(field_type)


def _item_type(list_type: Any) -> Any:
    """X, of `list[X]` or `list[X] | None`."""
    if typing.get_origin(list_type) is not list:
        list_type = next(t for t in typing.get_args(list_type) if t is not type(None))
    return typing.get_args(list_type)[0]


def _default(field: attrs.Attribute[Any]) -> Any:
    factory = getattr(field.default, "factory", None)  # attrs.Factory
    return factory() if callable(factory) else field.default


def _unstructure_factory(cls: type) -> Any:
    overrides = {a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)}
    return make_dict_unstructure_fn(
        cls,
        converter,
        _cattrs_omit_if_default=True,
        **overrides,  # type: ignore[arg-type]
    )


converter.register_structure_hook_factory(attrs.has, _structure_factory)
converter.register_unstructure_hook_factory(attrs.has, _unstructure_factory)


# --- frames -------------------------------------------------------------------------


@attrs.frozen
class Request:
    """A call that expects a response (ours or the agent's; each side numbers its own)."""

    id: RequestId
    method: str
    params: JSON = attrs.field(factory=dict)


@attrs.frozen
class Notification:
    method: str
    params: JSON = attrs.field(factory=dict)


@attrs.frozen
class RpcError:
    code: int
    message: str = ""
    data: Any = None


@attrs.frozen
class Response:
    id: RequestId | None
    result: JSON | None = None
    error: RpcError | None = None


Frame = Request | Notification | Response


def parse_frame(line: bytes) -> Frame:
    """One line -> one frame. Raises FrameError for anything that is not a JSON-RPC frame."""
    try:
        raw = json_text.loads(line)  # half an emoji (a lone surrogate) read as U+FFFD
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nested past the stack: not ours
        raise FrameError(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("jsonrpc") != "2.0":
        raise FrameError("not a JSON-RPC 2.0 object")
    method = raw.get("method")
    params = raw.get("params")
    if params is None:
        params = {}
    if method is not None:
        if not isinstance(method, str) or not isinstance(params, dict):
            raise FrameError("a call needs a string method and object params")
        if "id" in raw:
            if not _is_request_id(raw["id"]):
                raise FrameError("a request id must be a number or a string")
            return Request(raw["id"], method, params)
        return Notification(method, params)
    if "id" not in raw or ("result" in raw) == ("error" in raw):
        raise FrameError("a response needs an id and exactly one of result/error")
    if raw["id"] is not None and not _is_request_id(raw["id"]):  # null: the request was unreadable
        raise FrameError("a response id must be a number, a string or null")
    if "error" in raw:
        try:
            error = converter.structure(raw["error"], RpcError)
        except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
            raise FrameError(f"malformed error object: {exc}") from exc
        return Response(raw["id"], error=error)
    result = raw["result"]
    return Response(raw["id"], result=result if isinstance(result, dict) else {})


def _is_request_id(value: object) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def dump(frame: Frame) -> bytes:
    """The frame as one compact line, newline included. ASCII (non-ASCII as JSON escapes),
    so a lone surrogate in a string (one of ours, or echoed back) is written, never raised."""
    body: JSON = {"jsonrpc": "2.0"}
    match frame:
        case Request(id=rid, method=method, params=params):
            body |= {"id": rid, "method": method, "params": params}
        case Notification(method=method, params=params):
            body |= {"method": method, "params": params}
        case Response(id=rid, result=result, error=None):
            body |= {"id": rid, "result": result if result is not None else {}}
        case Response(id=rid, error=RpcError() as error):
            err: JSON = {"code": error.code, "message": error.message}
            if error.data is not None:
                err["data"] = error.data
            body |= {"id": rid, "error": err}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


# --- what the agent tells us (structured from params/results) ---------------------------


@attrs.frozen
class Implementation:
    name: str = ""
    version: str = ""
    title: str | None = None


@attrs.frozen
class PromptCapabilities:
    image: bool = False
    audio: bool = False
    embedded_context: bool = False


@attrs.frozen
class AgentCapabilities:
    load_session: bool = False
    prompt_capabilities: PromptCapabilities = attrs.field(
        default=PromptCapabilities(), metadata=DEFAULT_ON_ERROR
    )
    # Each capability is an object (`{"resume": {}}`) that carries nothing yet; null or
    # absent both mean not offered (schema).
    session_capabilities: dict[str, Any] = attrs.field(factory=dict, metadata=DEFAULT_ON_ERROR)

    def offers(self, capability: str) -> bool:
        """`sessionCapabilities.<capability>` is offered (`{}`; not null, not absent)."""
        return self.session_capabilities.get(capability) is not None


@attrs.frozen
class InitializeResult:
    protocol_version: int
    agent_capabilities: AgentCapabilities = attrs.field(
        default=AgentCapabilities(), metadata=DEFAULT_ON_ERROR
    )
    agent_info: Implementation | None = attrs.field(default=None, metadata=DEFAULT_ON_ERROR)
    auth_methods: list[JSON] = attrs.field(factory=list, metadata=SKIP_INVALID_ITEMS)


@attrs.frozen
class ConfigOption:
    id: str
    name: str = ""
    category: str | None = None
    current_value: Any = None


@attrs.frozen
class SessionResult:
    """The answer to session/new (with the agent-chosen id), session/resume or session/load."""

    session_id: str | None = None
    config_options: list[ConfigOption] | None = attrs.field(default=None, metadata=SKIP_INVALID_ITEMS)


@attrs.frozen
class SessionInfo:
    session_id: str
    cwd: str | None = None


@attrs.frozen
class ListSessionsResult:
    """The answer to session/list: one page of the agent's stored conversations."""

    sessions: list[SessionInfo] = attrs.field(factory=list, metadata=SKIP_INVALID_ITEMS)
    next_cursor: str | None = None


@attrs.frozen
class PromptResult:
    stop_reason: str
    usage: JSON | None = None


@attrs.frozen
class ContentBlock:
    type: str
    text: str | None = None


@attrs.frozen
class ToolCallContent:
    type: str
    content: ContentBlock | None = None


@attrs.frozen
class ToolCallFields:
    """A `tool_call` or `tool_call_update` (in an update every field but the id is optional)."""

    tool_call_id: str
    title: str | None = None
    kind: str | None = None
    status: str | None = None
    raw_input: Any = None
    raw_output: Any = None
    content: list[ToolCallContent] | None = attrs.field(default=None, metadata=SKIP_INVALID_ITEMS)


@attrs.frozen
class PermissionOption:
    option_id: str
    kind: str  # allow_once | allow_always | reject_once | reject_always
    name: str = ""


@attrs.frozen
class PermissionParams:
    session_id: str
    tool_call: ToolCallFields
    options: list[PermissionOption]


@attrs.frozen
class PlanEntry:
    content: str
    status: str = "pending"
    priority: str = "medium"


@attrs.frozen
class PlanFields:
    """A `plan` update: the whole plan (each replaces the last)."""

    entries: list[PlanEntry] = attrs.field(factory=list, metadata=SKIP_INVALID_ITEMS)


@attrs.frozen
class Cost:
    amount: float
    currency: str = "USD"


@attrs.frozen
class UsageFields:
    used: int = 0
    size: int = 0
    cost: Cost | None = attrs.field(default=None, metadata=DEFAULT_ON_ERROR)


@attrs.frozen
class ChunkFields:
    content: ContentBlock
    message_id: str | None = None


def structure(value: Any, cls: type[T]) -> T:
    """`converter.structure`, with every failure turned into FrameError."""
    try:
        return converter.structure(value, cls)
    except _STRUCTURE_ERRORS as exc:
        raise FrameError(f"malformed {cls.__name__}: {exc}") from exc


def unstructure(value: Any) -> Any:
    return converter.unstructure(value)
