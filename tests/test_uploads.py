"""Attachment names can never escape the upload folder (issue 4, item 6)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.uploads import MAX_NAME, safe_name, upload_folder


@pytest.mark.parametrize(
    ("hostile", "expected"),
    [("../../etc/passwd", "passwd"), (".bashrc", "bashrc"), ("a/b\\c.txt", "c.txt"), ("..", "file"), ("x\0y.txt", "xy.txt")],
)
def test_hostile_names(hostile: str, expected: str) -> None:
    assert safe_name(hostile) == expected


@given(st.text(max_size=400), st.sets(st.text(max_size=20), max_size=5))
def test_any_name_stays_one_plain_component_inside_the_folder(name: str, taken: set[str]) -> None:
    safe = safe_name(name, taken)
    assert safe and len(safe) <= MAX_NAME
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
