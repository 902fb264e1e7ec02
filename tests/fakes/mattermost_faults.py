"""Fault injection, rate limiting and bookkeeping of the fake Mattermost.

Owns the decisions a test can switch on: which requests fail and how (`FaultRule`), the
GCRA rate limiter Mattermost uses (throttled's, FACTS.md §3), and the record of what
clients sent (`Stats`). Sans-IO: callers pass the clock; nothing here sleeps or does I/O.
"""

from __future__ import annotations

import collections
import json
from typing import Any, Literal

import attrs

from tests.fakes.mattermost_http import Headers

# "refuse": hang up before handling; "drop_response": handle, then hang up unanswered
# (the client cannot tell whether its request took effect); "garble_response": handle,
# then answer 200 with a page that is not the API's (a proxy's); an int: answer that
# status without handling.
FaultMode = Literal["refuse", "drop_response", "garble_response"] | int


@attrs.define
class FaultRule:
    """Fail matching requests. Invariant: `remaining` is None (forever) or > 0."""

    mode: FaultMode
    path_prefix: str = ""
    method: str | None = None
    remaining: int | None = None

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.path_prefix) and self.method in (None, method)

    def consume(self) -> bool:
        """Count one use; True when the rule is spent and should be removed."""
        if self.remaining is None:
            return False
        self.remaining -= 1
        return self.remaining <= 0


@attrs.frozen
class RateDecision:
    limited: bool
    headers: Headers


@attrs.define
class RateLimiter:
    """throttled's GCRA with quota (per_second, burst), one bucket per key.

    limit = burst + 1 requests may pass at once; afterwards one per 1/per_second seconds.
    Times are integer nanoseconds, as Go's time.Duration, so that exact refills are exact.
    Invariant: `tat[key]` is the key's theoretical arrival time (ns, caller's clock).
    """

    per_second: float
    burst: int
    tat: dict[str, int] = attrs.Factory(dict)

    def check(self, key: str, now_s: float) -> RateDecision:
        now = round(now_s * 1e9)
        interval = round(1e9 / self.per_second)
        limit = self.burst + 1
        tolerance = interval * limit
        tat = max(self.tat.get(key, now), now)
        new_tat = tat + interval
        allow_at = new_tat - tolerance
        limited = now < allow_at
        if limited:
            ttl = tat - now
        else:
            self.tat[key] = new_tat
            ttl = new_tat - now
        spare = tolerance - ttl
        remaining = spare // interval if spare > 0 else 0
        headers: list[tuple[str, str]] = [
            ("X-RateLimit-Limit", str(limit)),
            ("X-RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-Reset", str(_ceil_seconds(ttl))),  # seconds from now, not an epoch
        ]
        if limited:
            headers.append(("Retry-After", str(_ceil_seconds(allow_at - now))))
        return RateDecision(limited, tuple(headers))


def _ceil_seconds(nanoseconds: int) -> int:
    return -(-nanoseconds // 1_000_000_000)


@attrs.frozen
class RequestRecord:
    """One HTTP request as the fake saw it, and what it answered (status 0: no answer)."""

    time: float  # trio.current_time() when it arrived
    method: str
    path: str
    route: str  # the route template, e.g. "/api/v4/posts/{post_id}/patch"; "" if unknown
    query: Headers
    headers: Headers  # Authorization's credentials replaced by "<redacted>"
    content_type: str
    body: bytes  # the raw body; a non-JSON one is cut at Stats.body_limit bytes
    body_size: int
    status: int = 0
    response_content_type: str = ""
    response_body: bytes = b""  # a non-JSON one is cut at Stats.body_limit bytes
    response_headers: Headers = ()

    @property
    def json(self) -> Any:
        """The request body parsed as JSON, or None when it is not JSON."""
        return _maybe_json(self.body, self.content_type)

    @property
    def response_json(self) -> Any:
        return _maybe_json(self.response_body, self.response_content_type)


def _maybe_json(body: bytes, content_type: str) -> Any:
    if not body or "json" not in content_type:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def redact(headers: Headers) -> Headers:
    """Headers safe to keep: the token in Authorization (and cookies) never stored."""
    out: list[tuple[str, str]] = []
    for name, value in headers:
        if name == "authorization":
            scheme = value.split(" ", 1)[0]
            value = f"{scheme} <redacted>"
        elif name == "cookie":
            value = "<redacted>"
        out.append((name, value))
    return tuple(out)


@attrs.define
class Stats:
    """Counters for assertions. `log` keeps the newest `log_limit` requests.

    JSON bodies are kept whole so that logged exchanges can be validated against the spec;
    others (file contents) are cut at `body_limit` bytes.
    """

    log_limit: int = 20_000
    body_limit: int = 65536
    requests: collections.Counter[tuple[str, str]] = attrs.Factory(collections.Counter)
    connections: int = 0  # TCP connections accepted (keep-alive reuses one)
    rate_limited: int = 0
    refused: int = 0
    ws_upgrades: int = 0
    ws_resumed: int = 0
    log: collections.deque[RequestRecord] = attrs.Factory(collections.deque)

    def __attrs_post_init__(self) -> None:
        self.log = collections.deque(maxlen=self.log_limit)

    def keepable(self, body: bytes, content_type: str) -> bytes:
        return body if "json" in content_type else body[: self.body_limit]

    def count(self, method: str, route: str) -> int:
        return self.requests[(method, route)]

    def count_path(self, method: str, path: str) -> int:
        """Requests (still in the log) to exactly this path, e.g. /api/v4/users/me."""
        return sum(1 for r in self.log if (r.method, r.path) == (method, path))

    def records(self, method: str | None = None, route: str | None = None) -> list[RequestRecord]:
        return [r for r in self.log if method in (None, r.method) and route in (None, r.route)]

    def reset(self) -> None:
        self.requests.clear()
        self.log.clear()
        self.connections = self.rate_limited = self.refused = 0
        self.ws_upgrades = self.ws_resumed = 0
