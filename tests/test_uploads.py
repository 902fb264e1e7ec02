"""Attachment names can never escape the upload folder (issue 4, item 6); saving a post's
attachments again (after a kill before its turn began) gives the same files, whole."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

import attrs
import pytest
import trio
from hypothesis import example, given
from hypothesis import strategies as st

from supervisor.core.events import FileRef
from supervisor.core.session import QueuedPrompt
from supervisor.core.uploads import MAX_NAME, MAX_NAME_BYTES, safe_name, upload_folder
from supervisor.durable import write_atomically
from supervisor.runtime.session_files import save_attachments


@pytest.mark.parametrize(
    ("hostile", "expected"),
    [("../../etc/passwd", "passwd"), (".bashrc", "bashrc"), ("a/b\\c.txt", "c.txt"), ("..", "file"), ("x\0y.txt", "xy.txt")],
)
def test_hostile_names(hostile: str, expected: str) -> None:
    assert safe_name(hostile) == expected


@given(st.text(max_size=400), st.sets(st.text(max_size=20), max_size=5))
def test_any_name_stays_one_plain_component_inside_the_folder(name: str, taken: set[str]) -> None:
    safe = safe_name(name, taken)
    assert safe and len(safe) <= MAX_NAME and len(safe.encode()) <= MAX_NAME_BYTES
    assert "/" not in safe and "\\" not in safe and "\0" not in safe
    assert not safe.startswith(".") and safe not in taken
    folder = Path("/cwd") / upload_folder("abc")
    target = (folder / safe).resolve()
    assert target.parent == folder


@given(st.text(max_size=80))
def test_post_folder_is_always_inside_uploads(post_id: str) -> None:
    folder = upload_folder(post_id)
    assert folder.parent == PurePosixPath(".supervisor/uploads") and ".." not in folder.parts


def test_three_hundred_characters_are_bounded_and_keep_the_extension() -> None:
    name = safe_name("a" * 300 + ".py")
    assert len(name) <= MAX_NAME and name.endswith(".py")


@given(st.integers(-(10**13), 10**13), st.integers(1, 2**31), st.integers(-(10**13), 10**13), st.integers(1, 2**31))
@example(123, 45, 1234, 5)  # both were `tg12345`
def test_distinct_telegram_messages_get_distinct_folders(chat: int, message: int, chat2: int, message2: int) -> None:
    """Two people's private chats may share a cwd: `tg:123:45` and `tg:1234:5` must not
    share a folder, now that saving a post again overwrites its folder's files."""
    if (chat, message) != (chat2, message2):
        assert upload_folder(f"tg:{chat}:{message}") != upload_folder(f"tg:{chat2}:{message2}")


@attrs.define
class FileServer:
    """The two calls of the chat port that saving attachments makes, over `files`."""

    files: dict[str, tuple[str, bytes]]

    async def file_info(self, file_id: str) -> FileRef:
        name, data = self.files[file_id]
        return FileRef(file_id, name, len(data), "text/plain")

    async def download_file(self, file_id: str) -> bytes:
        return self.files[file_id][1]


def _save(cwd: Path, chat: FileServer, file_ids: tuple[str, ...]) -> str:
    async def main() -> str:
        prompt = QueuedPrompt("p1", "c1", "read these")
        with trio.fail_after(10):
            saved, _notice = await save_attachments(
                chat, str(cwd), prompt, file_ids, max_upload_bytes=1000, max_image_bytes=1000
            )
        return saved.text

    return trio.run(main)


def test_saving_a_posts_files_again_gives_the_same_names_and_whole_files(tmp_path: Path) -> None:
    chat = FileServer({"a": ("notes.txt", b"first notes"), "b": ("notes.txt", b"second notes")})
    first = _save(tmp_path, chat, ("a", "b"))
    folder = tmp_path / upload_folder("p1")
    (folder / "notes.txt").write_bytes(b"fir")  # what a kill mid-write of an older kind left
    (folder / ".notes-1.txt.tmp").write_bytes(b"sec")  # ... and of this kind
    assert _save(tmp_path, chat, ("a", "b")) == first
    assert sorted(p.name for p in folder.iterdir()) == ["notes-1.txt", "notes.txt"]
    assert (folder / "notes.txt").read_bytes() == b"first notes"
    assert (folder / "notes-1.txt").read_bytes() == b"second notes"


def test_a_post_folder_that_is_a_link_is_not_written_through(tmp_path: Path) -> None:
    """Something in the session's cwd (its agent, say) made the post's folder a link to
    elsewhere: nothing is written there, and the prompt says the file was not saved."""
    cwd, elsewhere = tmp_path / "cwd", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_bytes(b"precious")
    (cwd / upload_folder("p1")).parent.mkdir(parents=True)
    (cwd / upload_folder("p1")).symlink_to(elsewhere)
    text = _save(cwd, FileServer({"a": ("notes.txt", b"overwritten?")}), ("a",))
    assert (elsewhere / "notes.txt").read_bytes() == b"precious"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["notes.txt"]
    assert "Attachments that were not saved: notes.txt (" in text and "link" in text


def test_a_post_folder_swapped_for_a_link_while_its_file_is_written_is_not_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder is checked and written through one descriptor, so swapping it for a link
    between the check and the write (a race something in the cwd could try) redirects
    nothing: the file lands in the folder that was checked."""
    cwd, elsewhere = tmp_path / "cwd", tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = cwd / upload_folder("p1")
    real_open = os.open

    def swap_then_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if dir_fd is not None and not folder.is_symlink():  # the folder is open: swap it now
            folder.rename(folder.with_name("moved"))
            folder.symlink_to(elsewhere)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", swap_then_open)
    _save(cwd, FileServer({"a": ("notes.txt", b"new notes")}), ("a",))
    assert list(elsewhere.iterdir()) == []
    assert (folder.with_name("moved") / "notes.txt").read_bytes() == b"new notes"


def test_a_link_planted_at_a_files_temporary_name_is_removed_not_written_through(tmp_path: Path) -> None:
    """Telegram's message ids are predictable, so something in the cwd can put a link where
    the next post's file is first written (`write_atomically` takes `.<name>.tmp`)."""
    cwd, precious = tmp_path / "cwd", tmp_path / "precious.txt"
    precious.write_bytes(b"precious")
    folder = cwd / upload_folder("p1")
    folder.mkdir(parents=True)
    (folder / ".notes.txt.tmp").symlink_to(precious)
    _save(cwd, FileServer({"a": ("notes.txt", b"new notes")}), ("a",))
    assert precious.read_bytes() == b"precious"
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert (folder / "notes.txt").read_bytes() == b"new notes"


@pytest.mark.parametrize(("name", "ending"), [("会議資料" * 24 + ".pdf", ".pdf"), ("한국어" * 60, ""), ("é" * 119, "é")])
def test_a_long_name_in_many_bytes_a_character_is_saved(tmp_path: Path, name: str, ending: str) -> None:
    """Bounded in characters only, 94 Japanese ones were 274 bytes: the save failed (File
    name too long) and the agent never got the file."""
    safe = safe_name(name)
    write_atomically(tmp_path / safe, b"x", folder_may_be_link=False)
    assert (tmp_path / safe).read_bytes() == b"x" and safe.endswith(ending)
