"""The shared seekable reader: one seek/tell behaviour for every remote reader."""

from __future__ import annotations

import io

import pytest

from dedupstore.streams import SeekableRawReader


class BytesReader(SeekableRawReader):
    """Serve a bytes object, counting how often a seek dropped the 'open response'."""

    def __init__(self, data: bytes) -> None:
        super().__init__(len(data))
        self.data = data
        self.drops = 0

    def _moved(self) -> None:
        self.drops += 1

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        self._ensure_open()
        chunk = self.data[self._pos : self._pos + len(buffer)]
        buffer[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


def test_seek_from_each_origin_and_read_through_a_buffer() -> None:
    raw = BytesReader(bytes(range(100)))
    with io.BufferedReader(raw) as handle:
        assert handle.seek(10) == 10
        assert handle.read(3) == bytes([10, 11, 12])
        assert handle.seek(-5, io.SEEK_END) == 95
        assert handle.read() == bytes(range(95, 100))
        handle.seek(50)
        assert handle.seek(2, io.SEEK_CUR) == 52
        assert handle.read(1) == bytes([52])


def test_seeking_to_the_current_position_keeps_the_open_response() -> None:
    raw = BytesReader(b"abcdef")
    raw.seek(0)
    raw.seek(0, io.SEEK_CUR)
    assert raw.drops == 0
    raw.seek(3)
    assert raw.drops == 1


@pytest.mark.parametrize(("offset", "whence"), [(-1, io.SEEK_SET), (-7, io.SEEK_END), (0, 3)])
def test_bad_seeks_are_refused_without_moving(offset: int, whence: int) -> None:
    raw = BytesReader(b"abcdef")
    raw.seek(2)
    with pytest.raises(ValueError, match=r"seek position|whence"):
        raw.seek(offset, whence)
    assert raw.tell() == 2


def test_a_closed_reader_refuses_reads() -> None:
    raw = BytesReader(b"abc")
    raw.close()
    with pytest.raises(ValueError, match="closed file"):
        raw.readinto(bytearray(1))
