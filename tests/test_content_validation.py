"""What save() is given: the wrong kind of content, closed and text-mode files, write modes."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.files.base import ContentFile, File

from dedupstore import DedupStorage

Make = Callable[..., DedupStorage]


@pytest.mark.parametrize("content", [None, 5, object()])
def test_content_that_is_not_a_file_raises_a_type_error_saying_what_is_accepted(
    make_fs_dedup: Make, content: object
) -> None:
    storage = make_fs_dedup()
    with pytest.raises(TypeError, match=r"File.*ContentFile") as caught:
        storage.save("x.txt", content)
    assert type(content).__name__ in str(caught.value)


def test_a_closed_file_is_refused_naming_the_file_and_saying_it_is_closed(
    make_fs_dedup: Make, tmp_path: Path
) -> None:
    source = tmp_path / "closed-source.bin"
    source.write_bytes(b"closed")
    handle = open(source, "rb")  # noqa: SIM115 - closed on purpose below
    content = File(handle)
    handle.close()
    storage = make_fs_dedup()
    with pytest.raises(ValueError, match=r"closed-source\.bin.*closed"):
        storage.save("x.bin", content)


def test_a_text_mode_file_is_refused_with_a_type_error(make_fs_dedup: Make, tmp_path: Path) -> None:
    source = tmp_path / "crlf.txt"
    source.write_bytes(b"line one\r\nline two\r\n")
    storage = make_fs_dedup()
    with open(source) as handle, pytest.raises(TypeError, match=r"text mode.*'rb'"):
        storage.save("crlf.txt", File(handle))
    assert not storage.exists("crlf.txt")


def test_text_content_is_stored_as_exactly_the_bytes_that_were_hashed(
    make_fs_dedup: Make,
) -> None:
    storage = make_fs_dedup()
    text = "line one\r\nline two: \u00e9\r\n"
    name = storage.save("text.txt", ContentFile(text))
    written = Path(storage.path(name)).read_bytes()
    assert written == text.encode("utf-8")
    record = storage.index.lookup(name)
    assert record is not None and record.size == len(written)
    assert record.digest == storage.content_key(name, io.BytesIO(written))
    # The exact bytes, uploaded as bytes, are a hit on the same object.
    assert storage.save("again.txt", ContentFile(written)) == name


@pytest.mark.parametrize("mode", ["wb", "w", "ab", "a", "r+", "rb+", "w+b", "x", "xb"])
def test_opening_for_writing_is_refused_saying_why_and_what_to_do(
    make_fs_dedup: Make, mode: str
) -> None:
    storage = make_fs_dedup()
    name = storage.save("shared.txt", ContentFile(b"shared bytes"))
    with pytest.raises(ValueError, match=r"(?s)shared.*save\(\)") as caught:
        storage.open(name, mode)
    assert "read-only" in str(caught.value)
    with storage.open(name) as handle:
        assert handle.read() == b"shared bytes"


@pytest.mark.parametrize("mode", ["r", "rb", "rt"])
def test_opening_for_reading_works_in_every_read_mode(make_fs_dedup: Make, mode: str) -> None:
    storage = make_fs_dedup()
    name = storage.save("read.txt", ContentFile(b"readable"))
    with storage.open(name, mode) as handle:
        data = handle.read()
    assert data in (b"readable", "readable")


class UpperCaseFile(File):
    """A File subclass whose chunks() transforms the data, as Django's storages honour."""

    def chunks(self) -> Iterator[bytes]:  # type: ignore[override]  # as Django's SlowFile
        for chunk in super().chunks():
            yield chunk.upper()


class FailingChunksFile(File):
    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        raise OSError("the source went away")
        yield b""  # pragma: no cover - a generator


def test_a_file_whose_chunks_transform_the_data_is_stored_as_its_chunks_say(
    make_fs_dedup: Make,
) -> None:
    storage = make_fs_dedup()
    name = storage.save("shout.txt", UpperCaseFile(io.BytesIO(b"quiet words"), name="s.txt"))
    assert Path(storage.path(name)).read_bytes() == b"QUIET WORDS"
    # What was hashed is what was written: the same bytes uploaded plainly are a hit.
    assert storage.save("again.txt", ContentFile(b"QUIET WORDS")) == name


def test_a_file_whose_chunks_fail_stores_nothing(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup()
    with pytest.raises(OSError, match="went away"):
        storage.save("gone.txt", FailingChunksFile(io.BytesIO(b"data"), name="g.txt"))
    assert not storage.exists("gone.txt")
