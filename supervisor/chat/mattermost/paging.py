"""Catch-up paging over `GET /channels/{id}/posts`: every post since a time, or after a
post, whichever pages the server hands out. Pure logic over one call, `post_list(params)`
(the REST client's, retried and budgeted), so that the rules of `since`, `before` and
`after` live in one place, next to the reasons for them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from supervisor.chat.mattermost.codec import PostList, WirePost

PostListCall = Callable[[dict[str, Any]], Awaitable[PostList]]

SINCE_LIMIT = 1000  # GET /channels/{id}/posts?since= returns at most this many, unpaged
PAGE_SIZE = 200  # the server's largest per_page
# Pages carry only their own posts (and the roots of their replies). Without this the
# server adds every reply of every thread a page touches: for long session threads that
# is most of the channel, again on every page, and catch-up reads none of it.
PAGE_ONLY = {"skipFetchThreads": "true"}


async def posts_since(post_list: PostListCall, since_ms: int) -> list[WirePost]:
    """Every post created after `since_ms`, and posts changed after it, oldest first.

    `since` answers with at most 1000 of the posts changed after it, and which 1000 is
    the database's choice (the LIMIT has no ORDER BY); it cannot be paged. Below the
    cap that is all of them. At the cap the channel is walked newest first, back to
    `since_ms`, so every post created after it is found whichever 1000 `since` chose
    (older posts changed since are then only those the one answer held; catch-up
    needs the new ones). The unchanged roots the server adds for context are left out.
    """
    posts = _listed(await post_list({"since": since_ms}))
    if len(posts) >= SINCE_LIMIT:
        posts += await _pages_back_to(post_list, since_ms)
    return _oldest_first([post for post in posts if post.update_at > since_ms])


async def posts_after(post_list: PostListCall, post_id: str) -> list[WirePost]:
    """Every post created after `post_id` in the channel, oldest first, all pages."""
    return _oldest_first(await _pages_after(post_list, post_id))


async def _pages_back_to(post_list: PostListCall, since_ms: int) -> list[WirePost]:
    """The channel's posts, newest first, page by page, until one created at or before
    `since_ms` (or the channel's first post).

    `before=<id>` means "created strictly earlier than that post", and posts can share
    a millisecond. So the next page is anchored on the oldest post of a later
    millisecond than the page's oldest: that millisecond's posts come again (and are
    deduplicated) instead of being skipped. A page all in one millisecond moves on
    by offset from the same anchor instead.
    """
    collected: dict[str, WirePost] = {}
    anchor, page_number = "", 0
    while True:
        params: dict[str, Any] = {"page": page_number, "per_page": PAGE_SIZE, **PAGE_ONLY}
        if anchor:
            params["before"] = anchor
        page = _listed(await post_list(params))
        fresh = [post for post in page if post.id not in collected]
        collected.update((post.id, post) for post in page)
        if len(page) < PAGE_SIZE or not fresh:
            return list(collected.values())
        oldest = min(post.create_at for post in page)
        if oldest <= since_ms:
            return list(collected.values())
        later = [post for post in page if post.create_at > oldest]
        if later:
            anchor, page_number = min(later, key=lambda post: post.create_at).id, 0
        else:
            page_number += 1

async def _pages_after(post_list: PostListCall, post_id: str) -> list[WirePost]:
    collected: dict[str, WirePost] = {}
    cursor = post_id
    while True:
        # A moving cursor (page stays 0) is not thrown off by posts created meanwhile.
        params = {"after": cursor, "page": 0, "per_page": PAGE_SIZE, **PAGE_ONLY}
        page = _listed(await post_list(params))
        fresh = [post for post in page if post.id not in collected]
        collected.update((post.id, post) for post in page)
        if len(page) < PAGE_SIZE or not fresh:
            return list(collected.values())
        cursor = _newest(page).id


def _listed(page: PostList) -> list[WirePost]:
    """The posts the page is about. `posts` also holds thread context (roots, siblings)
    that `order` leaves out; a server that sends no `order` gets the benefit of the doubt."""
    if not page.order:
        return list(page.posts.values())
    return [page.posts[post_id] for post_id in page.order if post_id in page.posts]


def _newest(posts: list[WirePost]) -> WirePost:
    return max(posts, key=lambda post: (post.create_at, post.id))


def _oldest_first(posts: list[WirePost]) -> list[WirePost]:
    """Deduplicate by id (the latest update wins) and sort by creation time."""
    latest: dict[str, WirePost] = {}
    for post in posts:
        known = latest.get(post.id)
        if known is None or post.update_at >= known.update_at:
            latest[post.id] = post
    return sorted(latest.values(), key=lambda post: (post.create_at, post.id))
