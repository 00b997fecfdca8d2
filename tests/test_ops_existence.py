"""How the ops commands tell which names the inner storage holds (``ops.base.Existence``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import SuspiciousFileOperation

from dedupstore import DedupStorage
from dedupstore.ops.base import LIST_AT, Existence


def _write(root: Path, names: list[str]) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())


def _count_calls(monkeypatch: pytest.MonkeyPatch, inner: Any, method: str) -> list[str]:
    """Record the names ``inner.<method>`` is called with (it still runs)."""
    calls: list[str] = []
    real = getattr(inner, method)

    def counting(name: str) -> Any:
        calls.append(name)
        return real(name)

    monkeypatch.setattr(inner, method, counting)
    return calls


def test_many_names_of_one_directory_are_found_with_one_listing(
    make_fs_dedup: Callable[..., DedupStorage], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = make_fs_dedup()
    present = [f"clips/{number}.bin" for number in range(LIST_AT * 2)]
    _write(tmp_path / "media", present)
    listings = _count_calls(monkeypatch, storage.inner, "listdir")
    exists_calls = _count_calls(monkeypatch, storage.inner, "exists")
    missing = ["clips/gone.bin", "clips/also-gone.bin"]

    found = Existence(storage).existing(present + missing)

    assert found == set(present)
    assert listings == ["clips"]
    # Only the names the listing lacks are asked again, one by one.
    assert sorted(exists_calls) == sorted(missing)


def test_a_file_written_after_its_directory_was_listed_is_found(
    make_fs_dedup: Callable[..., DedupStorage], tmp_path: Path
) -> None:
    storage = make_fs_dedup()
    first = [f"clips/{number}.bin" for number in range(LIST_AT)]
    _write(tmp_path / "media", first)
    existence = Existence(storage)
    assert existence.existing(first) == set(first)

    _write(tmp_path / "media", ["clips/new.bin"])

    assert existence.existing(["clips/new.bin"]) == {"clips/new.bin"}


def test_a_directory_that_does_not_exist_holds_no_names(
    make_fs_dedup: Callable[..., DedupStorage],
) -> None:
    storage = make_fs_dedup()
    names = [f"nowhere/{number}.bin" for number in range(LIST_AT)]

    assert Existence(storage).existing(names) == set()


def test_unusual_names_are_asked_with_exists_and_a_bad_one_raises(
    make_fs_dedup: Callable[..., DedupStorage], tmp_path: Path
) -> None:
    storage = make_fs_dedup()
    _write(tmp_path / "media", ["a/b.bin"])

    assert Existence(storage).existing(["a/./b.bin", "a//b.bin"]) == {"a/./b.bin", "a//b.bin"}
    with pytest.raises(SuspiciousFileOperation):
        Existence(storage).existing(["../outside.bin"])


def test_a_storage_that_cannot_list_is_asked_name_by_name(
    make_fs_dedup: Callable[..., DedupStorage], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = make_fs_dedup()
    present = [f"clips/{number}.bin" for number in range(LIST_AT)]
    _write(tmp_path / "media", present)

    def cannot_list(path: str) -> tuple[list[str], list[str]]:
        raise NotImplementedError("this storage cannot list")

    monkeypatch.setattr(storage.inner, "listdir", cannot_list)
    exists_calls = _count_calls(monkeypatch, storage.inner, "exists")
    existence = Existence(storage)

    assert existence.existing([*present, "clips/gone.bin"]) == set(present)
    assert len(exists_calls) == LIST_AT + 1
    assert existence.can_list is False
