"""The fake Mattermost's data and the rules that change it: users, channels, posts, reactions, files.

Owns every decision about data: permissions, validation (with the real error ids), the
pending_post_id dedupe, edit history, reply counts, and which `Broadcast`s a change
produces. It is sans-IO: callers (REST handlers, WebSocket actions, test hooks) pass the
acting user's id, get values back, and deliver the broadcasts themselves. It must never
await, sleep or touch a socket. Post listings live in `mattermost_postlist`.

Posts are kept as dicts of their persistent wire fields (what the real database stores);
`render` adds the transient fields (reply_count, metadata, ...) for each answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import attrs

from tests.fakes.mattermost_shapes import (
    JSON,
    MAX_FILE_IDS_RUNES,
    MAX_POST_RUNES,
    MAX_PROPS_RUNES,
    PENDING_POST_TTL_S,
    ApiError,
    Broadcast,
    MillisClock,
    bad_body,
    channel_json,
    dumps,
    emoji_error,
    file_info_json,
    forbidden,
    new_id,
    post_json,
    reaction_json,
    render_file_info,
    user_json,
)

# Post types a client may create (model.Post.IsValid), besides any "custom_*" type.
_ALLOWED_POST_TYPES = frozenset({"", "slack_attachment", "system_generic", "me", "reminder"})


@attrs.define
class StoredFile:
    info: JSON
    data: bytes


@attrs.define
class Store:
    """All state of the fake server.

    Invariants:
    - `channel_posts[c]` lists the ids of channel c's posts (never edit-history rows) in
      creation order, which is also create_at order (the clock never repeats).
    - `channel_rows[c]` lists every row of channel c, edit-history rows included: `since`
      queries see them, as on a real server.
    - `thread_stats[root]` = [live reply count, create_at of the latest reply].
    - `pending[ppid]` = (post id, monotonic expiry) for pending_post_id dedupe.
    """

    clock: MillisClock = attrs.Factory(MillisClock)
    # Seconds for the dedupe TTL and the edit/typing logs (the server passes trio's clock).
    monotonic: Callable[[], float] = time.monotonic
    team_id: str = attrs.Factory(new_id)
    users: dict[str, JSON] = attrs.Factory(dict)
    user_ids_by_name: dict[str, str] = attrs.Factory(dict)
    tokens: dict[str, str] = attrs.Factory(dict)
    channels: dict[str, JSON] = attrs.Factory(dict)
    members: dict[str, set[str]] = attrs.Factory(dict)
    posts: dict[str, JSON] = attrs.Factory(dict)
    channel_posts: dict[str, list[str]] = attrs.Factory(dict)
    channel_rows: dict[str, list[str]] = attrs.Factory(dict)
    replies: dict[str, list[str]] = attrs.Factory(dict)
    thread_stats: dict[str, list[int]] = attrs.Factory(dict)
    reactions: dict[str, dict[tuple[str, str], JSON]] = attrs.Factory(dict)
    files: dict[str, StoredFile] = attrs.Factory(dict)
    pending: dict[str, tuple[str, float]] = attrs.Factory(dict)
    edits: list[tuple[str, float]] = attrs.Factory(list)
    typing_events: list[tuple[str, str, str, float]] = attrs.Factory(list)
    # Which 1000 rows `?since=` answers with when more changed (see mattermost_postlist):
    # "arbitrary" (the default), "oldest" or "newest" changes.
    since_pick: str = "arbitrary"

    # -- users and channels -------------------------------------------------------------

    def add_user(self, username: str, *, is_bot: bool = False) -> tuple[JSON, str]:
        """Create a user and a personal access token for it."""
        name = username.lower()
        if name in self.user_ids_by_name:
            raise ValueError(f"user {name!r} exists")
        user = user_json(new_id(), name, self.clock(), is_bot=is_bot)
        self.users[user["id"]] = user
        self.user_ids_by_name[name] = user["id"]
        token = new_id()
        self.tokens[token] = user["id"]
        return user, token

    def user_by_name(self, username: str) -> JSON | None:
        user_id = self.user_ids_by_name.get(username.lower())
        return self.users[user_id] if user_id else None

    def direct_channel(self, user_a: str, user_b: str) -> JSON:
        """Get or create the DM channel of two users (a user may DM itself)."""
        for uid in (user_a, user_b):
            if uid not in self.users:
                raise ApiError(
                    400,
                    "api.channel.create_direct_channel.invalid_user.app_error",
                    "Invalid user ID for direct channel creation.",
                    f"user_id={uid}",
                )
        name = "__".join(sorted((user_a, user_b)))
        for channel in self.channels.values():
            if channel["type"] == "D" and channel["name"] == name:
                return channel
        return self._add_channel(
            channel_json(new_id(), self.clock(), kind="D", name=name), {user_a, user_b}
        )

    def add_channel(self, name: str, member_ids: Iterable[str], *, kind: str = "O") -> JSON:
        """An open ("O") or private ("P") team channel with the given members."""
        channel = channel_json(
            new_id(), self.clock(), kind=kind, name=name, display_name=name, team_id=self.team_id
        )
        return self._add_channel(channel, set(member_ids))

    def _add_channel(self, channel: JSON, members: set[str]) -> JSON:
        self.channels[channel["id"]] = channel
        self.members[channel["id"]] = members
        self.channel_posts[channel["id"]] = []
        self.channel_rows[channel["id"]] = []
        return channel

    def member_channel(self, user_id: str, channel_id: str) -> JSON:
        """The channel, if `user_id` may use it; else the error a real server answers."""
        channel = self.channels.get(channel_id)
        if channel is None:
            raise ApiError(
                404,
                "app.channel.get.existing.app_error",
                "Unable to find the existing channel.",
                f"channel_id={channel_id}",
            )
        if user_id not in self.members[channel_id]:
            raise forbidden()
        return channel

    # -- posts ---------------------------------------------------------------------------

    def visible_post(self, user_id: str, post_id: str) -> JSON:
        """A live post the user may read (404 if unknown or deleted, 403 if not a member)."""
        post = self.posts.get(post_id)
        if post is None or post["delete_at"]:
            raise ApiError(
                404, "app.post.get.app_error", "Unable to get the post.", f"post_id={post_id}"
            )
        self.member_channel(user_id, post["channel_id"])
        return post

    def render(self, post: JSON, *, pending_post_id: str = "") -> JSON:
        """A post as the API sends it: stored fields plus the transient ones.

        pending_post_id is not a database column: only the create answer and the `posted`
        event carry it; every later read has "".
        """
        out = dict(post)
        out["props"] = dict(post["props"])
        out["file_ids"] = list(post["file_ids"])
        out["pending_post_id"] = pending_post_id
        reply_count, last_reply_at = self.thread_stats.get(post["root_id"] or post["id"], (0, 0))
        out["reply_count"] = reply_count
        out["last_reply_at"] = last_reply_at
        out["participants"] = None
        metadata: JSON = {}
        reactions = self.reactions.get(post["id"])
        if reactions:
            out["has_reactions"] = True
            metadata["reactions"] = [dict(r) for r in reactions.values()]
        if post["file_ids"]:
            metadata["files"] = [
                render_file_info(self.files[f].info) for f in post["file_ids"] if f in self.files
            ]
        out["metadata"] = metadata
        return out

    def create_post(
        self,
        user_id: str,
        channel_id: str,
        message: str,
        *,
        root_id: str = "",
        file_ids: Sequence[str] = (),
        props: JSON | None = None,
        pending_post_id: str = "",
        kind: str = "",
    ) -> tuple[JSON, list[Broadcast]]:
        """POST /posts: validate, dedupe on pending_post_id, save, and announce `posted`."""
        channel = self.member_channel(user_id, channel_id)
        existing = self._deduplicate(pending_post_id)
        if existing is not None:
            return self.render(existing, pending_post_id=pending_post_id), []
        if root_id:
            self._check_root(root_id, channel_id)
        _check_post_fields(message, props or {}, list(file_ids), kind)
        now = self.clock()
        post = post_json(
            new_id(),
            now,
            user_id=user_id,
            channel_id=channel_id,
            root_id=root_id,
            message=message,
            kind=kind,
            props=dict(props or {}),
            file_ids=self._claim_files(user_id, channel_id, file_ids),
        )
        self._save_new_post(post, channel)
        if pending_post_id:
            self.pending[pending_post_id] = (post["id"], self.monotonic() + PENDING_POST_TTL_S)
        rendered = self.render(post, pending_post_id=pending_post_id)
        return rendered, [self._posted_event(rendered, channel)]

    def _deduplicate(self, pending_post_id: str) -> JSON | None:
        if not pending_post_id:
            return None
        seen = self.pending.get(pending_post_id)
        if seen is None or seen[1] < self.monotonic():
            return None
        return self.posts[seen[0]]

    def _check_root(self, root_id: str, channel_id: str) -> None:
        root = self.posts.get(root_id)
        if root is None or root["delete_at"] or root["root_id"] or root["channel_id"] != channel_id:
            raise ApiError(
                400,
                "api.post.create_post.root_id.app_error",
                "Invalid RootId parameter.",
                f"root_id={root_id}",
            )

    def _claim_files(self, user_id: str, channel_id: str, file_ids: Sequence[str]) -> list[str]:
        """Attach the uploaded files this user may attach; drop others, as AttachToPost does."""
        claimed: list[str] = []
        for file_id in dict.fromkeys(file_ids):
            stored = self.files.get(file_id)
            if stored and stored.info["user_id"] == user_id and not stored.info["post_id"]:
                stored.info["channel_id"] = channel_id
                claimed.append(file_id)
        return claimed

    def _save_new_post(self, post: JSON, channel: JSON) -> None:
        post_id, created = post["id"], post["create_at"]
        for file_id in post["file_ids"]:
            self.files[file_id].info["post_id"] = post_id
        self.posts[post_id] = post
        self.channel_posts[channel["id"]].append(post_id)
        self.channel_rows[channel["id"]].append(post_id)
        channel["last_post_at"] = created
        channel["total_msg_count"] += 1
        if post["root_id"]:
            root = self.posts[post["root_id"]]
            self.replies.setdefault(root["id"], []).append(post_id)
            stats = self.thread_stats.setdefault(root["id"], [0, 0])
            stats[0] += 1
            stats[1] = created
            root["update_at"] = created  # a reply bumps its root's UpdateAt (SqlPostStore.Save)
        else:
            channel["last_root_post_at"] = created
            channel["total_msg_count_root"] += 1

    def _posted_event(self, rendered: JSON, channel: JSON) -> Broadcast:
        sender = self.users[rendered["user_id"]]
        members = self.members[channel["id"]]
        data: JSON = {
            "channel_display_name": (
                f"@{sender['username']}" if channel["type"] == "D" else channel["display_name"]
            ),
            "channel_name": channel["name"],
            "channel_type": channel["type"],
            "post": dumps(rendered),
            "sender_name": f"@{sender['username']}",
            "set_online": True,
            "team_id": channel["team_id"],
        }
        mimes = [f["mime_type"] for f in rendered["metadata"].get("files", [])]
        if any(m.startswith("image/") for m in mimes):
            data["image"] = "true"
        if any(not m.startswith("image/") for m in mimes):
            data["otherFile"] = "true"
        return Broadcast(
            "posted",
            data,
            frozenset(members),
            channel_id=channel["id"],
            mentioned=self._mentioned(rendered, channel),
        )

    def _mentioned(self, post: JSON, channel: JSON) -> frozenset[str]:
        """Who the post mentions: the other DM member, or @username in the text."""
        others = self.members[channel["id"]] - {post["user_id"]}
        if channel["type"] == "D":
            return frozenset(others)
        text = post["message"]
        return frozenset(uid for uid in others if f"@{self.users[uid]['username']}" in text)

    def patch_post(self, user_id: str, post_id: str, patch: JSON) -> tuple[JSON, list[Broadcast]]:
        """PUT /posts/{id}/patch: the author changes message/props/...; history row kept."""
        post = self.visible_post(user_id, post_id)
        if post["user_id"] != user_id:
            raise forbidden()
        message = patch.get("message", post["message"])
        props = patch.get("props", post["props"])
        if not isinstance(message, str):
            raise bad_body("message")
        if not isinstance(props, dict):
            raise bad_body("props")
        _check_post_fields(message, props, post["file_ids"], post["type"])
        self._keep_history(post)
        now = self.clock()
        if message != post["message"]:
            post["edit_at"] = now
        post.update(
            message=message,
            props=dict(props),
            update_at=now,
            is_pinned=bool(patch.get("is_pinned", post["is_pinned"])),
        )
        if post["root_id"]:
            root = self.posts[post["root_id"]]
            root["update_at"] = max(root["update_at"], now)
        self.edits.append((post_id, self.monotonic()))
        rendered = self.render(post)
        channel = self.channels[post["channel_id"]]
        event = Broadcast(
            "post_edited",
            {"post": dumps(rendered)},
            frozenset(self.members[channel["id"]]),
            channel_id=channel["id"],
        )
        return rendered, [event]

    def _keep_history(self, post: JSON) -> None:
        """SqlPostStore.Update: the old version becomes a deleted row pointing at the post."""
        old = dict(post)
        old["id"] = new_id()
        old["original_id"] = post["id"]
        old["delete_at"] = old["update_at"] = self.clock()
        self.posts[old["id"]] = old
        self.channel_rows[post["channel_id"]].append(old["id"])

    def delete_post(self, user_id: str, post_id: str) -> list[Broadcast]:
        """DELETE /posts/{id}: soft-delete the post (and a root's replies), announce it."""
        post = self.visible_post(user_id, post_id)
        if post["user_id"] != user_id:
            raise forbidden()
        now = self.clock()
        doomed = [post_id] + ([] if post["root_id"] else self.replies.get(post_id, []))
        for pid in doomed:
            victim = self.posts[pid]
            if victim["delete_at"]:
                continue
            victim["delete_at"] = victim["update_at"] = now
            victim["props"] = {**victim["props"], "deleteBy": user_id}
            if victim["root_id"]:
                self.thread_stats[victim["root_id"]][0] -= 1
        channel_id = post["channel_id"]
        return [
            Broadcast(
                "post_deleted",
                {"post": dumps(self.render(post))},
                frozenset(self.members[channel_id]),
                channel_id=channel_id,
            )
        ]

    # -- reactions -----------------------------------------------------------------------

    def save_reaction(self, user_id: str, post_id: str, emoji: str) -> tuple[JSON, list[Broadcast]]:
        """POST /reactions (an upsert); the post's update_at moves, as HasReactions is saved."""
        post = self.visible_post(user_id, post_id)
        error = emoji_error(emoji)
        if error:
            raise error
        now = self.clock()
        reaction = reaction_json(user_id, post_id, emoji, post["channel_id"], now)
        self.reactions.setdefault(post_id, {})[(user_id, emoji)] = reaction
        post["update_at"] = now
        return dict(reaction), [self._reaction_event("reaction_added", reaction)]

    def delete_reaction(self, user_id: str, post_id: str, emoji: str) -> list[Broadcast]:
        """DELETE /users/{u}/posts/{p}/reactions/{e}: the event goes out even if none existed."""
        post = self.visible_post(user_id, post_id)
        now = self.clock()
        removed = self.reactions.get(post_id, {}).pop((user_id, emoji), None)
        reaction = removed or reaction_json(user_id, post_id, emoji, post["channel_id"], now)
        reaction = {**reaction, "update_at": now, "delete_at": now}
        if removed:
            post["update_at"] = now
        return [self._reaction_event("reaction_removed", reaction)]

    def _reaction_event(self, event: str, reaction: JSON) -> Broadcast:
        channel_id = reaction["channel_id"]
        return Broadcast(
            event,
            {"reaction": dumps(reaction)},
            frozenset(self.members[channel_id]),
            channel_id=channel_id,
        )

    def reactions_for(self, post_id: str) -> list[JSON]:
        return [dict(r) for r in self.reactions.get(post_id, {}).values()]

    # -- files and typing ----------------------------------------------------------------

    def save_file(self, user_id: str, channel_id: str, name: str, data: bytes) -> JSON:
        self.member_channel(user_id, channel_id)
        info = file_info_json(new_id(), user_id, channel_id, name, data, self.clock())
        self.files[info["id"]] = StoredFile(info, data)
        return render_file_info(info)

    def readable_file(self, user_id: str, file_id: str) -> StoredFile:
        stored = self.files.get(file_id)
        if stored is None or stored.info["delete_at"]:
            raise ApiError(
                404,
                "app.file_info.get.app_error",
                "Unable to get the file info.",
                f"file_id={file_id}",
            )
        if stored.info["user_id"] != user_id:
            self.member_channel(user_id, stored.info["channel_id"])
        return stored

    def typing(self, user_id: str, channel_id: str, parent_id: str) -> Broadcast:
        """`typing` to the channel's other members (PublishUserTyping)."""
        self.member_channel(user_id, channel_id)
        self.typing_events.append((user_id, channel_id, parent_id, self.monotonic()))
        omit = frozenset({user_id})
        return Broadcast(
            "typing",
            {"parent_id": parent_id, "user_id": user_id},
            frozenset(self.members[channel_id]) - omit,
            channel_id=channel_id,
            omit_users=omit,
        )


def _check_post_fields(message: str, props: JSON, file_ids: list[str], kind: str) -> None:
    """model.Post.IsValid's checks that a client can trip."""
    if len(message) > MAX_POST_RUNES:  # Python str length counts runes (code points)
        raise ApiError(
            400,
            "model.post.is_valid.message_length.app_error",
            "Invalid Message property for post.",
            f"Length={len(message)} MaxLength={MAX_POST_RUNES}",
        )
    if kind not in _ALLOWED_POST_TYPES and not kind.startswith("custom_"):
        raise ApiError(400, "model.post.is_valid.type.app_error", "Invalid type.", f"id={kind}")
    if len(dumps(file_ids)) > MAX_FILE_IDS_RUNES:
        raise ApiError(
            400,
            "model.post.is_valid.file_ids.app_error",
            "Invalid file ids. Note that uploads are limited to 10 files maximum.",
        )
    if len(dumps(props)) > MAX_PROPS_RUNES:
        raise ApiError(400, "model.post.is_valid.props.app_error", "Invalid props.")
