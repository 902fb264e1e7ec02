"""Post listings of the fake Mattermost: channel pages, `since` catch-up, threads.

Owns the PostList semantics of MM's api4 getPostsForChannel / getPostThread and
SqlPostStore (FACTS.md §2): precedence since > after > before > page; `order` newest
first; thread context (roots, sibling replies) in `posts` but not in `order`; cursor ids.
Pure reads of the `Store`: nothing here mutates it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable

from tests.fakes.mattermost_shapes import JSON, MAX_PER_PAGE, MAX_SINCE_POSTS, ApiError
from tests.fakes.mattermost_store import Store


def channel_posts(
    store: Store,
    user_id: str,
    channel_id: str,
    *,
    since: int = 0,
    after: str = "",
    before: str = "",
    page: int = 0,
    per_page: int = 60,
    skip_threads: bool = False,
) -> JSON:
    """GET /channels/{id}/posts."""
    store.member_channel(user_id, channel_id)
    if since > 0:
        return _since(store, channel_id, since)
    live = [
        p for pid in store.channel_posts[channel_id] if not (p := store.posts[pid])["delete_at"]
    ]
    per_page = min(max(per_page, 0), MAX_PER_PAGE)  # larger values are silently truncated
    window_range = _window(store, live, channel_id, after, before, page, per_page)
    if window_range is None:
        return _listing(store, [], [], prev_id="", next_id="")
    lo, hi = window_range
    window = live[lo:hi]
    newest_first = window[::-1]
    return _listing(
        store,
        newest_first,
        _thread_context(store, window, skip_threads),
        prev_id=live[lo - 1]["id"] if 0 < lo <= len(live) else "",
        next_id=live[hi]["id"] if hi < len(live) else "",
    )


def _window(
    store: Store,
    live: list[JSON],
    channel_id: str,
    after: str,
    before: str,
    page: int,
    per_page: int,
) -> tuple[int, int] | None:
    """The [lo, hi) slice of `live` (oldest first) a query selects; None: unknown anchor."""
    offset = max(page, 0) * per_page
    created = [p["create_at"] for p in live]
    if after or before:
        # Compared by create_at, so an anchor deleted since the client saw it still works.
        anchor = store.posts.get(after or before)
        if anchor is None or anchor["channel_id"] != channel_id:
            return None
        if after:
            lo = min(bisect_right(created, anchor["create_at"]) + offset, len(live))
            return lo, min(lo + per_page, len(live))
        end = max(bisect_left(created, anchor["create_at"]) - offset, 0)
    else:
        end = max(len(live) - offset, 0)
    return max(end - per_page, 0), end


def _thread_context(store: Store, window: list[JSON], skip_threads: bool) -> list[JSON]:
    """Posts sent along for context: each touched thread's root (and, unless skipped, replies)."""
    roots = {p["root_id"] or p["id"] for p in window}
    if skip_threads:
        roots = {p["root_id"] for p in window if p["root_id"]}
    context: list[JSON] = []
    for root_id in roots:
        context.append(store.posts[root_id])
        if not skip_threads:
            context.extend(store.posts[r] for r in store.replies.get(root_id, ()))
    return [p for p in context if not p["delete_at"]]


def _since(store: Store, channel_id: str, since: int) -> JSON:
    """`since`: rows changed after `since` (edits, deletions and edit-history rows too).

    At most 1000 of them, and the real query's LIMIT has no ORDER BY (SqlPostStore.
    GetPostsSince): which 1000 is up to the database's plan, so a client must not take
    them for the oldest or the newest. `store.since_pick` says which the fake answers
    with: "arbitrary" (in id order; ids are random, so neither end of the range),
    "oldest" or "newest" changes. Parents of changed replies come along in `posts`.
    """
    rows = (store.posts[pid] for pid in store.channel_rows[channel_id])
    changed = [p for p in rows if p["update_at"] > since]
    changed = _pick(changed, store.since_pick)[:MAX_SINCE_POSTS]
    ids = {p["id"] for p in changed}
    parents = [store.posts[r] for r in {p["root_id"] for p in changed if p["root_id"]} - ids]
    # Newest first; an edit-history row sorts just after the live post it was copied from.
    newest_first = sorted(
        changed, key=lambda p: (p["create_at"], not p["original_id"]), reverse=True
    )
    return _listing(store, newest_first, parents, prev_id="", next_id="")


def _pick(changed: list[JSON], pick: str) -> list[JSON]:
    """`changed` in the order the LIMIT takes them."""
    if pick == "oldest":
        return sorted(changed, key=lambda p: p["update_at"])
    if pick == "newest":
        return sorted(changed, key=lambda p: p["update_at"], reverse=True)
    if pick == "arbitrary":
        return sorted(changed, key=lambda p: p["id"])
    raise ValueError(f"since_pick must be arbitrary, oldest or newest, not {pick!r}")


def thread(store: Store, user_id: str, post_id: str) -> JSON:
    """GET /posts/{id}/thread: the root and its live replies, whichever post is named."""
    post = store.visible_post(user_id, post_id)
    root = store.posts[post["root_id"] or post["id"]]
    if root["delete_at"]:
        raise ApiError(404, "app.post.get.app_error", "Unable to get the post.")
    replies = [store.posts[r] for r in store.replies.get(root["id"], ())]
    items = [root] + [r for r in replies if not r["delete_at"]]
    return _listing(store, items[::-1], [], prev_id="", next_id="")


def _listing(
    store: Store, ordered: list[JSON], context: Iterable[JSON], *, prev_id: str, next_id: str
) -> JSON:
    posts = {p["id"]: store.render(p) for p in context}
    posts.update((p["id"], store.render(p)) for p in ordered)
    return {
        "order": [p["id"] for p in ordered],
        "posts": posts,
        "next_post_id": next_id,
        "prev_post_id": prev_id,
        # The real server omits has_next here (a *bool, omitempty); the fake always sends it.
        "has_next": bool(next_id),
        "first_inaccessible_post_time": 0,
    }
