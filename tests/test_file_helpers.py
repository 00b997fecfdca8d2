"""The shared file helpers of ``dedupstore.utils``: their edge cases."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile, File
from django.core.files.uploadedfile import TemporaryUploadedFile

from dedupstore.utils import (
    MAX_WRAPPER_DEPTH,
    disk_path,
    innermost_file,
    is_seekable,
    rewind,
    temporary_file_path,
)


class Wrapper:
    def __init__(self, file: Any) -> None:
        self.file = file


class SeeksWithoutSaying:
    """Has seek() and tell() but no seekable(): it does not say it can seek."""

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def tell(self) -> int:
        return 0


class ClosedStream(io.BytesIO):
    def seekable(self) -> bool:
        raise ValueError("I/O operation on closed file")


def wrapped(depth: int, core: object) -> object:
    for _ in range(depth):
        core = Wrapper(core)
    return core


def test_an_object_with_no_seekable_method_is_not_seekable() -> None:
    assert is_seekable(SeeksWithoutSaying()) is False
    assert is_seekable(object()) is False


def test_a_stream_whose_seekable_raises_is_not_seekable() -> None:
    assert is_seekable(ClosedStream()) is False


def test_a_stream_that_says_it_seeks_is_seekable() -> None:
    assert is_seekable(io.BytesIO(b"x")) is True
    assert is_seekable(ContentFile(b"x")) is True


def test_wrappers_are_unwrapped_down_to_the_object_holding_the_bytes() -> None:
    core = io.BytesIO(b"bytes")
    assert innermost_file(wrapped(MAX_WRAPPER_DEPTH, core)) is core
    assert innermost_file(File(File(core))) is core


def test_unwrapping_stops_after_the_maximum_depth() -> None:
    core = io.BytesIO(b"bytes")
    deeper = wrapped(MAX_WRAPPER_DEPTH + 1, core)
    assert innermost_file(deeper) is not core
    assert innermost_file(deeper).file is core


def test_an_object_that_is_its_own_file_is_not_unwrapped_forever() -> None:
    loop = Wrapper(None)
    loop.file = loop
    assert innermost_file(loop) is loop


def test_rewinding_a_stream_that_cannot_seek_leaves_it_alone() -> None:
    rewind(object())  # no seek at all: nothing raised
    stream = io.BytesIO(b"abc")
    stream.read()
    rewind(stream)
    assert stream.tell() == 0


def test_a_temporary_upload_names_its_file_until_the_file_is_gone() -> None:
    upload = TemporaryUploadedFile("a.bin", "application/octet-stream", 0, None)
    try:
        path = upload.temporary_file_path()
        assert temporary_file_path(upload) == path
        assert disk_path(upload) == path
        os.unlink(path)
        assert temporary_file_path(upload) is None
    finally:
        upload.close()


def test_an_upload_whose_path_getter_fails_has_no_path() -> None:
    class Broken:
        def temporary_file_path(self) -> str:
            raise NotImplementedError

    assert temporary_file_path(Broken()) is None


def test_a_file_opened_for_reading_in_binary_passes_its_path_on(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    with open(path, "rb") as handle:
        assert disk_path(File(handle)) == str(path)


def test_a_path_that_now_leads_to_another_file_is_not_passed_on(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    with open(path, "rb") as handle:
        path.unlink()
        path.write_bytes(b"new")  # another inode under the same name
        assert disk_path(File(handle)) is None


def test_text_and_writable_files_do_not_pass_their_path_on(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"abc")
    with open(path) as text:
        assert disk_path(File(text)) is None
    with open(path, "rb+") as writable:
        assert disk_path(File(writable)) is None


def test_in_memory_content_has_no_path() -> None:
    assert disk_path(ContentFile(b"abc")) is None
