"""The fake Mattermost's REST API v4: routes, authentication and one handler per endpoint.

Owns the mapping from an HTTP request to a Store operation and back to a status code and
JSON body (FACTS.md §2), including AppError answers. Handlers are synchronous: they call
the Store, hand its broadcasts to `publish`, and return a Response. Fault injection, rate
limiting, latency and logging wrap this layer (mattermost.py); none is decided here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import attrs

from tests.fakes import mattermost_postlist as postlist
from tests.fakes.mattermost_http import FormPart, Request, Response, parse_multipart
from tests.fakes.mattermost_shapes import (
    DEFAULT_PER_PAGE,
    JSON,
    MAX_POST_RUNES,
    SERVER_VERSION,
    ApiError,
    Broadcast,
    app_error,
    bad_body,
    bad_param,
    dumps,
    forbidden,
    is_valid_id,
    render_file_info,
)
from tests.fakes.mattermost_store import Store

API = "/api/v4"


def json_response(status: int, value: Any) -> Response:
    return Response(status, dumps(value).encode())


def error_response(error: ApiError, request_id: str) -> Response:
    return json_response(error.status, error.body(request_id))


def status_ok() -> Response:
    return json_response(200, {"status": "OK"})


@attrs.frozen
class Route:
    method: str
    template: str  # as in the OpenAPI spec, e.g. "/api/v4/posts/{post_id}"
    handler: str  # name of the RestApi method
    auth: bool = True
    pattern: re.Pattern[str] = attrs.field(init=False)

    @pattern.default
    def _compile(self) -> re.Pattern[str]:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        return re.compile(f"^{regex}$")


ROUTES: tuple[Route, ...] = (
    Route("GET", f"{API}/system/ping", "ping", auth=False),
    Route("GET", f"{API}/config/client", "client_config", auth=False),
    Route("POST", f"{API}/users/ids", "users_by_ids"),
    Route("POST", f"{API}/users/usernames", "users_by_usernames"),
    Route("GET", f"{API}/users/username/{{username}}", "user_by_username"),
    Route("GET", f"{API}/users/{{user_id}}", "get_user"),
    Route("POST", f"{API}/users/{{user_id}}/typing", "typing"),
    Route(
        "DELETE",
        f"{API}/users/{{user_id}}/posts/{{post_id}}/reactions/{{emoji_name}}",
        "delete_reaction",
    ),
    Route("POST", f"{API}/channels/direct", "create_direct"),
    Route("GET", f"{API}/channels/{{channel_id}}", "get_channel"),
    Route("GET", f"{API}/channels/{{channel_id}}/posts", "channel_posts"),
    Route("POST", f"{API}/posts", "create_post"),
    Route("GET", f"{API}/posts/{{post_id}}", "get_post"),
    Route("DELETE", f"{API}/posts/{{post_id}}", "delete_post"),
    Route("PUT", f"{API}/posts/{{post_id}}/patch", "patch_post"),
    Route("GET", f"{API}/posts/{{post_id}}/thread", "get_thread"),
    Route("GET", f"{API}/posts/{{post_id}}/reactions", "post_reactions"),
    Route("POST", f"{API}/reactions", "save_reaction"),
    Route("POST", f"{API}/files", "upload_file"),
    Route("GET", f"{API}/files/{{file_id}}", "get_file"),
    Route("GET", f"{API}/files/{{file_id}}/info", "get_file_info"),
)

WEBSOCKET_ROUTE = f"{API}/websocket"


def match_route(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        if route.method == method and (found := route.pattern.match(path)):
            return route, found.groupdict()
    return None


@attrs.frozen
class Call:
    request: Request
    params: dict[str, str]
    user_id: str  # the session's user; "" on a route that needs no session

    def arg(self, name: str, default: str = "") -> str:
        value = self.request.arg(name)
        return default if value is None else value

    def int_arg(self, name: str, default: int) -> int:
        value = self.request.arg(name)
        if value in (None, ""):
            return default
        try:
            return int(value)
        except ValueError:
            raise bad_param(name) from None

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.request.body)
        except ValueError:
            raise bad_body(name) from None


def _str_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_body(name)
    return value


def _optional_str(body: JSON, key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise bad_body(key)
    return value


@attrs.define
class RestApi:
    store: Store
    publish: Callable[[Broadcast], None]
    max_file_size: int

    def session_user(self, request: Request) -> str | None:
        """The user of the request's token: Bearer/Token header, MMAUTHTOKEN cookie, or
        ?access_token (model.ParseAuthTokenFromRequest)."""
        token = ""
        scheme, _, value = (request.header("authorization") or "").partition(" ")
        if scheme.lower() in ("bearer", "token"):
            token = value.strip()
        elif cookie := request.header("cookie"):
            for item in cookie.split(";"):
                key, _, val = item.strip().partition("=")
                if key == "MMAUTHTOKEN":
                    token = val
        else:
            token = request.arg("access_token") or ""
        return self.store.tokens.get(token) if token else None

    def dispatch(self, request: Request, request_id: str) -> Response:
        matched = match_route(request.method, request.path)
        try:
            if matched is None:
                raise ApiError(
                    404, "api.context.404.app_error", "Sorry, we could not find the page."
                )
            route, params = matched
            user_id = self.session_user(request) or ""
            if route.auth and not user_id:
                raise ApiError(
                    401,
                    "api.context.session_expired.app_error",
                    "Invalid or expired session, please login again.",
                )
            if params.get("user_id") == "me":
                params["user_id"] = user_id
            handler: Callable[[Call], Response] = getattr(self, route.handler)
            return handler(Call(request, params, user_id))
        except ApiError as error:
            return error_response(error, request_id)

    def _publish_all(self, broadcasts: list[Broadcast]) -> None:
        for broadcast in broadcasts:
            self.publish(broadcast)

    # -- system --------------------------------------------------------------------------

    def ping(self, call: Call) -> Response:
        return json_response(
            200,
            {
                "ActiveSearchBackend": "database",
                "AndroidLatestVersion": "",
                "AndroidMinVersion": "",
                "IosLatestVersion": "",
                "IosMinVersion": "",
                "status": "OK",
            },
        )

    def client_config(self, call: Call) -> Response:
        fmt = call.arg("format")
        if not fmt:
            raise ApiError(
                501,
                "api.config.client.old_format.app_error",
                "New format for the client configuration is not supported yet. "
                "Please specify format=old.",
            )
        if fmt != "old":
            raise bad_param("format")
        return json_response(
            200,
            {
                "Version": SERVER_VERSION,
                "BuildNumber": SERVER_VERSION,
                "SiteName": "Mattermost",
                "MaxPostSize": str(MAX_POST_RUNES),
                "MaxFileSize": str(self.max_file_size),
                "EnableCustomEmoji": "false",
                "EnableFileAttachments": "true",
                "EnableUserTypingMessages": "true",
                "CollapsedThreads": "disabled",
            },
        )

    # -- users ---------------------------------------------------------------------------

    def get_user(self, call: Call) -> Response:
        user = self.store.users.get(call.params["user_id"])
        if user is None:
            raise _missing_user()
        return json_response(200, user)

    def user_by_username(self, call: Call) -> Response:
        user = self.store.user_by_name(call.params["username"])
        if user is None:
            raise _missing_user()
        return json_response(200, user)

    def users_by_ids(self, call: Call) -> Response:
        ids = _str_list(call.json("user_ids"), "user_ids")
        if not ids:
            raise bad_body("user_ids")
        since = call.int_arg("since", 0)
        users = [self.store.users[i] for i in dict.fromkeys(ids) if i in self.store.users]
        return json_response(200, [u for u in users if u["update_at"] > since])

    def users_by_usernames(self, call: Call) -> Response:
        names = _str_list(call.json("usernames"), "usernames")
        if not names:
            raise bad_body("usernames")
        users = [u for n in dict.fromkeys(names) if (u := self.store.user_by_name(n))]
        return json_response(200, users)

    def typing(self, call: Call) -> Response:
        if call.params["user_id"] != call.user_id:
            raise forbidden()
        body = call.json("typing")
        if not isinstance(body, dict) or not is_valid_id(body.get("channel_id")):
            raise bad_body("channel_id")
        broadcast = self.store.typing(
            call.user_id, body["channel_id"], _optional_str(body, "parent_id")
        )
        self.publish(broadcast)
        return status_ok()

    # -- channels ------------------------------------------------------------------------

    def create_direct(self, call: Call) -> Response:
        ids = _str_list(call.json("user_ids"), "user_ids")
        if len(ids) != 2:
            raise bad_body("user_ids")
        if call.user_id not in ids:
            raise forbidden()
        return json_response(201, self.store.direct_channel(ids[0], ids[1]))

    def get_channel(self, call: Call) -> Response:
        return json_response(
            200, self.store.member_channel(call.user_id, call.params["channel_id"])
        )

    def channel_posts(self, call: Call) -> Response:
        listing = postlist.channel_posts(
            self.store,
            call.user_id,
            call.params["channel_id"],
            since=call.int_arg("since", 0),
            after=call.arg("after"),
            before=call.arg("before"),
            page=call.int_arg("page", 0),
            per_page=call.int_arg("per_page", DEFAULT_PER_PAGE),
            skip_threads=call.arg("skipFetchThreads") == "true",
        )
        return json_response(200, listing)

    # -- posts ---------------------------------------------------------------------------

    def create_post(self, call: Call) -> Response:
        body = call.json("post")
        if not isinstance(body, dict):
            raise bad_body("post")
        channel_id = body.get("channel_id")
        if not is_valid_id(channel_id):
            raise bad_body("channel_id")
        props = body.get("props") or {}
        if not isinstance(props, dict):
            raise bad_body("props")
        post, broadcasts = self.store.create_post(
            call.user_id,
            channel_id,
            _optional_str(body, "message"),
            root_id=_optional_str(body, "root_id"),
            file_ids=_str_list(body.get("file_ids") or [], "file_ids"),
            props=props,
            pending_post_id=_optional_str(body, "pending_post_id"),
            kind=_optional_str(body, "type"),
        )
        self._publish_all(broadcasts)
        return json_response(201, post)

    def get_post(self, call: Call) -> Response:
        post = self.store.visible_post(call.user_id, call.params["post_id"])
        return json_response(200, self.store.render(post))

    def delete_post(self, call: Call) -> Response:
        self._publish_all(self.store.delete_post(call.user_id, call.params["post_id"]))
        return status_ok()

    def patch_post(self, call: Call) -> Response:
        patch = call.json("post")
        if not isinstance(patch, dict):
            raise bad_body("post")
        post, broadcasts = self.store.patch_post(call.user_id, call.params["post_id"], patch)
        self._publish_all(broadcasts)
        return json_response(200, post)

    def get_thread(self, call: Call) -> Response:
        return json_response(200, postlist.thread(self.store, call.user_id, call.params["post_id"]))

    # -- reactions -----------------------------------------------------------------------

    def post_reactions(self, call: Call) -> Response:
        post = self.store.visible_post(call.user_id, call.params["post_id"])
        return json_response(200, self.store.reactions_for(post["id"]))

    def save_reaction(self, call: Call) -> Response:
        body = call.json("reaction")
        if not isinstance(body, dict):
            raise bad_body("reaction")
        if body.get("user_id") != call.user_id:
            raise ApiError(
                403,
                "api.reaction.save_reaction.user_id.app_error",
                "You do not have the appropriate permissions.",
            )
        if not is_valid_id(body.get("post_id")):
            raise bad_body("post_id")
        reaction, broadcasts = self.store.save_reaction(
            call.user_id, body["post_id"], _optional_str(body, "emoji_name")
        )
        self._publish_all(broadcasts)
        return json_response(201, reaction)

    def delete_reaction(self, call: Call) -> Response:
        if call.params["user_id"] != call.user_id:
            raise forbidden()
        broadcasts = self.store.delete_reaction(
            call.user_id, call.params["post_id"], call.params["emoji_name"]
        )
        self._publish_all(broadcasts)
        return status_ok()

    # -- files ---------------------------------------------------------------------------

    def upload_file(self, call: Call) -> Response:
        request = call.request
        if len(request.body) > self.max_file_size:
            raise too_large_error(len(request.body), self.max_file_size)
        if request.content_type.startswith("multipart/form-data"):
            channel_id, files, client_ids = _multipart_upload(call)
        else:
            channel_id, files, client_ids = call.arg("channel_id"), [], []
            if not call.arg("filename"):
                raise bad_param("filename")
            files.append((call.arg("filename"), request.body))
        if not is_valid_id(channel_id):
            raise bad_param("channel_id")
        if not files:
            raise bad_body("files")
        infos = [self.store.save_file(call.user_id, channel_id, name, data) for name, data in files]
        return json_response(201, {"file_infos": infos, "client_ids": client_ids})

    def get_file(self, call: Call) -> Response:
        stored = self.store.readable_file(call.user_id, call.params["file_id"])
        name = stored.info["name"].replace('"', "")
        return Response(
            200,
            stored.data,
            content_type=stored.info["mime_type"] or "application/octet-stream",
            headers=(
                ("Content-Disposition", f'attachment;filename="{name}"'),
                ("X-Content-Type-Options", "nosniff"),
            ),
        )

    def get_file_info(self, call: Call) -> Response:
        stored = self.store.readable_file(call.user_id, call.params["file_id"])
        return json_response(200, render_file_info(stored.info))


def _multipart_upload(call: Call) -> tuple[str, list[tuple[str, bytes]], list[str]]:
    try:
        parts = parse_multipart(call.request.body, call.request.content_type)
    except ValueError:
        raise ApiError(
            400,
            "api.file.upload_file.read_request.app_error",
            "Unable to upload file(s). Error reading or parsing request data.",
        ) from None

    def fields(name: str) -> list[FormPart]:
        return [p for p in parts if p.name == name]

    channel_id = call.arg("channel_id") or next(
        (p.data.decode("utf-8", "replace") for p in fields("channel_id")), ""
    )
    files = [(p.filename or "file", p.data) for p in fields("files")]
    client_ids = [p.data.decode("utf-8", "replace") for p in fields("client_ids")]
    return channel_id, files, client_ids


def too_large_error(length: int, limit: int) -> ApiError:
    return ApiError(
        413,
        "api.file.upload_file.too_large_detailed.app_error",
        f"Unable to upload file. {length} bytes exceeds the maximum allowed {limit} bytes.",
    )


def _missing_user() -> ApiError:
    return ApiError(404, "app.user.missing_account.const", "Unable to find the user.")


def rate_limited_response() -> Response:
    """What MM's rate limiter answers: http.Error's text/plain body, not an AppError."""
    return Response(
        429,
        b"limit exceeded\n",
        content_type="text/plain; charset=utf-8",
        headers=(("X-Content-Type-Options", "nosniff"),),
    )


def injected_error(status: int, request_id: str) -> Response:
    body = app_error(
        status, "fake.injected_failure.app_error", f"Injected failure: HTTP {status}.", request_id
    )
    return json_response(status, body)
