"""AppwriteStorage against the Appwrite test server, through the real SDK."""

from __future__ import annotations

import io
import os
import pickle
import socket
import threading
import time
from datetime import datetime
from typing import Any

import pytest
import requests
from appwrite.services.storage import Storage as SDKStorage
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.base import ContentFile, File
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from dedupstore.backends.appwrite import (
    ID_PATTERN,
    AppwriteAuthError,
    AppwriteStorage,
    AppwriteUnavailable,
    bucket_id_for,
    file_id_for,
)
from dedupstore.protocol import DedupBackend, backend_of
from dedupstore.testing.appwrite import AppwriteTestServer

MiB = 1024 * 1024


def read(storage: AppwriteStorage, name: str) -> bytes:
    with storage.open(name) as handle:
        return handle.read()


class NonSeekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), len(self._data) - self._pos)
        buffer[:count] = self._data[self._pos : self._pos + count]
        self._pos += count
        return count


# -- configuration ---------------------------------------------------------------------


def test_options_fall_back_to_settings(server: AppwriteTestServer) -> None:
    with override_settings(
        APPWRITE_API_KEY=server.api_key,
        APPWRITE_PROJECT_ID=server.project_id,
        APPWRITE_BUCKET_ID="fromsettings",
        APPWRITE_API_ENDPOINT=server.endpoint,
        APPWRITE_TIMEOUT=12,
        APPWRITE_PUBLIC_URL="https://files.example.com/v1/",
        APPWRITE_URL_TOKENS=False,
    ):
        made = AppwriteStorage()
        assert made.bucket_id == "fromsettings"
        assert made.timeout == 12.0
        assert made.public_url == "https://files.example.com/v1"
        name = made.save("hello.txt", ContentFile(b"hi"))
    assert name == "fromsettings/hello.txt"
    assert made.url(name) == (
        "https://files.example.com/v1/storage/buckets/fromsettings/files/hello.txt/view"
        f"?project={server.project_id}"
    )
    # A keyword beats the setting.
    with override_settings(APPWRITE_BUCKET_ID="fromsettings"):
        assert AppwriteStorage(bucket_id="explicit").bucket_id == "explicit"


def test_default_endpoint_is_appwrite_cloud_and_nothing_is_contacted_at_init() -> None:
    made = AppwriteStorage(api_key="k", project_id="p")
    assert made.endpoint == "https://cloud.appwrite.io/v1"
    assert made._client is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"endpoint": "http://127.0.0.1:1/v1/"}, "trailing slash"),
        ({"endpoint": "127.0.0.1/v1"}, "http://"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "5"}, "timeout"),
        ({"bucket_id": "bad id"}, "not a valid Appwrite ID"),
        ({"bucket_permissions": 'read("any")'}, "list of Appwrite permission"),
        ({"api_key": ""}, "non-empty"),
        ({"public_url": "files.example.com"}, "public_url"),
        ({"bucket": "media"}, "unknown option"),
    ],
)
def test_bad_options_fail_loudly(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        AppwriteStorage(**options)


def test_missing_credentials_fail_on_first_use() -> None:
    made = AppwriteStorage(endpoint="http://127.0.0.1:9/v1", bucket_id="b")
    with pytest.raises(ImproperlyConfigured, match="APPWRITE_API_KEY"):
        made.exists("x.txt")


def test_name_without_directory_needs_a_bucket_id(server: AppwriteTestServer) -> None:
    made = AppwriteStorage(**server.storage_options())
    with pytest.raises(ImproperlyConfigured, match="bucket_id"):
        made.save("loose.txt", ContentFile(b"x"))
    assert made.save("dir/ok.txt", ContentFile(b"x")) == "dir/ok.txt"


def test_deconstruct_never_contains_the_key(server: AppwriteTestServer) -> None:
    made = AppwriteStorage(**server.storage_options(bucket_id="b", timeout=5))
    path, args, kwargs = made.deconstruct()
    assert path == "dedupstore.backends.appwrite.AppwriteStorage"
    assert "api_key" not in kwargs
    assert server.api_key not in repr((path, args, kwargs))
    assert kwargs["bucket_id"] == "b"


def test_pickles_without_its_client(storage: AppwriteStorage) -> None:
    name = storage.save("p/one.txt", ContentFile(b"one"))
    assert storage._client is not None
    clone = pickle.loads(pickle.dumps(storage))
    assert clone._client is None
    assert read(clone, name) == b"one"


# -- names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "file_name",
    [
        "plain.txt",
        "with space.txt",
        "ünïcødé 文件.pdf",
        ".hidden",
        "_underscore.txt",
        "-dash",
        "noextension",
        "x" * 300 + ".tar.gz",
        "a.verylongextension",
        "emoji 😀.png",
        "quote\"and'.txt",
    ],
)
def test_every_file_name_gets_a_valid_id_and_keeps_its_name(
    storage: AppwriteStorage, sdk: SDKStorage, file_name: str
) -> None:
    name = storage.save(f"names/{file_name}", ContentFile(file_name.encode()))
    bucket, file_id = name.split("/")
    assert bucket == "names"
    assert ID_PATTERN.match(file_id)
    assert read(storage, name) == file_name.encode()
    # urllib3 writes '"' in a multipart filename as %22 (the HTML5 form encoding), and
    # the server (PHP's parser, and ours) takes the filename as written.
    assert sdk.get_file(bucket, file_id).name == file_name.replace('"', "%22")
    assert storage.locate(name) == (bucket, file_id)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=80).filter(lambda s: "/" not in s))
def test_file_ids_are_valid_and_stable(file_name: str) -> None:
    file_id = file_id_for(file_name)
    assert ID_PATTERN.match(file_id)
    assert file_id_for(file_id) == file_id  # <bucket>/<fileId> maps to itself
    assert ID_PATTERN.match(bucket_id_for(file_name))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=50), min_size=2, max_size=2, unique=True))
def test_distinct_invalid_names_get_distinct_ids(names: list[str]) -> None:
    first, second = names
    if ID_PATTERN.match(first) or ID_PATTERN.match(second):
        return  # valid IDs map to themselves; they are distinct already
    assert file_id_for(first) != file_id_for(second)


def test_bucket_rule(storage: AppwriteStorage, sdk: SDKStorage) -> None:
    assert storage.save("assets/statics/media/my_file.txt", ContentFile(b"1")) == (
        "media/my_file.txt"
    )
    assert storage.save("top.txt", ContentFile(b"2")) == "default/top.txt"
    odd = storage.save("my photos/a.txt", ContentFile(b"3"))
    bucket = odd.split("/")[0]
    assert ID_PATTERN.match(bucket)
    assert sdk.get_bucket(bucket).name == "my photos"
    assert {"media", "default", bucket} <= {b.id for b in sdk.list_buckets().buckets}


def test_folded_paths_never_replace_each_other(storage: AppwriteStorage) -> None:
    first = storage.save("a/media/x.txt", ContentFile(b"from a"))
    second = storage.save("b/media/x.txt", ContentFile(b"from b"))
    assert first == "media/x.txt"
    assert second != first and second.startswith("media/x_")
    assert read(storage, first) == b"from a"
    assert read(storage, second) == b"from b"


def test_new_buckets_are_private_unless_configured(
    server: AppwriteTestServer, storage: AppwriteStorage, sdk: SDKStorage
) -> None:
    private = storage.save("private/p.txt", ContentFile(b"secret"))
    assert sdk.get_bucket("private").permissions == []
    public_storage = AppwriteStorage(**server.storage_options(bucket_permissions=['read("any")']))
    public = public_storage.save("public/p.txt", ContentFile(b"open"))
    assert sdk.get_bucket("public").permissions == ['read("any")']
    # A browser fetching a plain link with no key: public works, private does not...
    plain = AppwriteStorage(**server.storage_options(url_tokens=False))
    assert requests.get(plain.url(public), timeout=10).content == b"open"
    assert requests.get(plain.url(private), timeout=10).status_code == 401
    # ... and a link with a file token opens the private file.
    assert requests.get(storage.url(private), timeout=10).content == b"secret"


def test_file_permissions(server: AppwriteTestServer, sdk: SDKStorage) -> None:
    made = AppwriteStorage(**server.storage_options(file_permissions=['read("any")']))
    name = made.save("perm/f.txt", ContentFile(b"f"))
    assert sdk.get_file("perm", "f.txt").permissions == ['read("any")']
    assert sdk.get_bucket("perm").filesecurity is True
    assert requests.get(made.url(name), timeout=10).content == b"f"


def test_max_length_is_respected(storage: AppwriteStorage) -> None:
    name = storage.save("ml/a-rather-long-file-name.txt", ContentFile(b"1"), max_length=20)
    assert len(name) <= 20
    again = storage.save("ml/a-rather-long-file-name.txt", ContentFile(b"2"), max_length=20)
    assert len(again) <= 20 and again != name
    assert read(storage, again) == b"2"
    with pytest.raises(SuspiciousFileOperation):
        storage.save("ml/a.txt", ContentFile(b"3"), max_length=4)


@pytest.mark.parametrize("bad", ["../escape.txt", "a/../../escape.txt", "/etc/passwd", "dir/"])
def test_suspicious_names(storage: AppwriteStorage, bad: str) -> None:
    for call in (
        lambda: storage.save(bad, ContentFile(b"x")),
        lambda: storage.open(bad),
        lambda: storage.exists(bad),
        lambda: storage.delete(bad),
        lambda: storage.url(bad),
        lambda: storage.size(bad),
    ):
        with pytest.raises(SuspiciousFileOperation):
            call()


# -- saving and reading ----------------------------------------------------------------


def test_small_save_is_one_request(server: AppwriteTestServer, storage: AppwriteStorage) -> None:
    storage.save("s/first.txt", ContentFile(b"first"))  # creates the bucket
    server.clear_log()
    name = storage.save("s/small.txt", ContentFile(b"small content"))
    # The availability check, then the upload.
    assert [(r.method, r.status) for r in server.requests] == [("GET", 404), ("POST", 201)]
    assert read(storage, name) == b"small content"
    assert storage.size(name) == 13
    assert storage.exists(name)


def test_temporary_uploaded_file_is_uploaded_from_its_path(
    server: AppwriteTestServer, storage: AppwriteStorage, sdk: SDKStorage
) -> None:
    payload = os.urandom(12 * MiB + 3)
    upload = TemporaryUploadedFile("big.bin", "application/octet-stream", len(payload), None)
    upload.write(payload)
    upload.flush()
    try:
        server.clear_log()
        name = storage.save("up/big.bin", upload)
    finally:
        upload.close()
    chunk_posts = [r for r in server.requests if r.path.endswith("/files") and r.status == 201]
    assert len(chunk_posts) == 3
    assert read(storage, name) == payload
    assert sdk.get_file("up", "big.bin").name == "big.bin"


@pytest.mark.parametrize(
    "make",
    [
        lambda data, tmp: ContentFile(data),
        lambda data, tmp: File(NonSeekable(data), name="pipe.bin"),
        lambda data, tmp: SimpleUploadedFile("s.bin", data),
        lambda data, tmp: File(open(tmp, "rb")),  # noqa: SIM115 - closed by the test
    ],
    ids=["contentfile", "non-seekable", "in-memory-upload", "file-on-disk"],
)
def test_large_content_of_every_kind(storage: AppwriteStorage, tmp_path: Any, make: Any) -> None:
    payload = os.urandom(6 * MiB + 11)
    path = tmp_path / "on-disk.bin"
    path.write_bytes(payload)
    content = make(payload, str(path))
    try:
        name = storage.save("kinds/data.bin", content)
    finally:
        content.close()
    assert read(storage, name) == payload


def test_a_file_open_for_writing_uploads_the_bytes_still_in_its_buffer(
    storage: AppwriteStorage, tmp_path: Any
) -> None:
    # Written in small pieces and never flushed: the file's path lacks the buffer's tail.
    payload = os.urandom(6 * MiB + 1000)
    handle = open(tmp_path / "being-written.bin", "w+b")  # noqa: SIM115 - closed below
    try:
        for start in range(0, len(payload), 4096):
            handle.write(payload[start : start + 4096])
        assert os.path.getsize(handle.name) < len(payload)
        name = storage.save("kinds/written.bin", File(handle))
    finally:
        handle.close()
    assert read(storage, name) == payload


class ChunksOnly:
    """Content with ``chunks()`` and a name, but no ``seek`` or ``seekable``."""

    def __init__(self, data: bytes) -> None:
        self.name = "chunks.bin"
        self._data = data

    def chunks(self, chunk_size: int = 64 * 1024) -> Any:
        for start in range(0, len(self._data), chunk_size):
            yield self._data[start : start + chunk_size]


@pytest.mark.parametrize("size", [1024, 6 * MiB + 5])
def test_content_that_cannot_seek_and_says_nothing_is_read_once_without_seeking(
    storage: AppwriteStorage, size: int
) -> None:
    payload = os.urandom(size)
    name = storage.save("kinds/chunks.bin", ChunksOnly(payload))
    assert read(storage, name) == payload


def test_open_streams_through_ranged_requests(
    server: AppwriteTestServer, storage: AppwriteStorage
) -> None:
    payload = os.urandom(20 * MiB + 5)
    name = storage.save("stream/big.bin", ContentFile(payload))
    server.clear_log()
    with storage.open(name) as handle:
        assert handle.size == len(payload)
        first = handle.read(10)
        assert first == payload[:10]
        handle.seek(len(payload) - 3)
        assert handle.read() == payload[-3:]
        handle.seek(0)
        assert handle.read() == payload
    downloads = [r for r in server.requests if r.path.endswith("/download")]
    assert downloads and all(r.status == 206 for r in downloads)
    assert max(r.bytes_sent for r in downloads) <= 8 * MiB
    assert max(r.bytes_sent for r in server.requests) <= 8 * MiB


@pytest.mark.parametrize("size", [1, 2, 3, 8 * MiB + 1])
def test_odd_sizes_and_the_last_byte(storage: AppwriteStorage, size: int) -> None:
    payload = os.urandom(size)
    name = storage.save(f"sizes/{size}.bin", ContentFile(payload))
    assert read(storage, name) == payload
    with storage.open(name) as handle:
        handle.seek(size - 1)
        assert handle.read() == payload[-1:]
        assert handle.read() == b""


def test_json_file_opens_as_bytes(storage: AppwriteStorage) -> None:
    name = storage.save("json/data.json", ContentFile(b'{"a": [1, 2]}'))
    assert read(storage, name) == b'{"a": [1, 2]}'
    with storage.open(name, "r") as text:
        assert text.read() == '{"a": [1, 2]}'


def test_open_is_read_only(storage: AppwriteStorage) -> None:
    name = storage.save("ro/x.txt", ContentFile(b"x"))
    with pytest.raises(ValueError, match="read-only"):
        storage.open(name, "wb")


def test_missing_files(storage: AppwriteStorage) -> None:
    storage.save("there/x.txt", ContentFile(b"x"))
    for missing in ("there/missing.txt", "nobucket/missing.txt"):
        assert not storage.exists(missing)
        with pytest.raises(FileNotFoundError):
            storage.open(missing)
        with pytest.raises(FileNotFoundError):
            storage.size(missing)
        with pytest.raises(FileNotFoundError):
            storage.get_modified_time(missing)
        storage.delete(missing)  # deleting a missing file is fine


def test_delete_is_idempotent(storage: AppwriteStorage) -> None:
    name = storage.save("del/x.txt", ContentFile(b"x"))
    storage.delete(name)
    assert not storage.exists(name)
    storage.delete(name)


def test_times_are_aware(storage: AppwriteStorage) -> None:
    before = datetime.now().astimezone()
    name = storage.save("times/x.txt", ContentFile(b"x"))
    created = storage.get_created_time(name)
    modified = storage.get_modified_time(name)
    assert created.tzinfo is not None and modified.tzinfo is not None
    assert abs((created - before).total_seconds()) < 60
    assert modified >= created


def test_url_is_encoded(storage: AppwriteStorage) -> None:
    assert storage.url("media/a.txt") == (
        f"{storage.endpoint}/storage/buckets/media/files/a.txt/view?project={storage.project_id}"
    )
    made = AppwriteStorage(
        endpoint="http://127.0.0.1:9/v1",
        project_id="p&q",
        public_url="https://cdn.example/v1",
        url_tokens=False,
    )
    assert made.url("m/b.txt") == (
        "https://cdn.example/v1/storage/buckets/m/files/b.txt/view?project=p%26q"
    )


def test_listdir_reads_every_page(storage: AppwriteStorage, sdk: SDKStorage) -> None:
    from appwrite.input_file import InputFile

    sdk.create_bucket("many", "many")
    expected = []
    for i in range(230):
        sdk.create_file("many", f"f{i:03d}", InputFile.from_bytes(b"x", f"f{i}.txt"))
        expected.append(f"f{i:03d}")
    storage.save("top.txt", ContentFile(b"top"))
    assert storage.listdir("many") == ([], expected)
    assert storage.listdir("some/where/many") == ([], expected)
    directories, files = storage.listdir("")
    assert "many" in directories and "default" not in directories
    assert files == ["top.txt"]


# -- errors ----------------------------------------------------------------------------


def test_wrong_key_names_endpoint_and_project_but_not_the_key(
    server: AppwriteTestServer,
) -> None:
    secret = "wrong-key-0123456789"
    made = AppwriteStorage(**server.storage_options(api_key=secret, bucket_id="b"))
    with pytest.raises(AppwriteAuthError) as info:
        made.exists("x.txt")
    message = str(info.value)
    assert server.endpoint in message and server.project_id in message
    assert secret not in message and secret not in repr(info.value.__cause__)
    assert isinstance(info.value, PermissionError)
    assert info.value.type == "user_unauthorized"


def test_wrong_project(server: AppwriteTestServer) -> None:
    made = AppwriteStorage(**server.storage_options(project_id="nope", bucket_id="b"))
    with pytest.raises(AppwriteAuthError, match="'nope'") as info:
        made.save("x.txt", ContentFile(b"x"))
    assert info.value.type == "project_not_found"


def test_unreachable_endpoint() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    secret = "unreachable-secret-key"
    made = AppwriteStorage(
        endpoint=f"http://127.0.0.1:{port}/v1", project_id="p", api_key=secret, timeout=2
    )
    with pytest.raises(AppwriteUnavailable) as info:
        made.exists("b/x.txt")
    assert info.value.__cause__ is None  # the requests error holds the key header
    assert secret not in str(info.value)


def test_timeout_applies_to_sdk_calls_and_downloads(server: AppwriteTestServer) -> None:
    made = AppwriteStorage(**server.storage_options(timeout=0.3))
    name = made.save("slow/x.txt", ContentFile(b"x"))
    server.inject(500, "general_server_error", path="/files/", delay=2.0)
    started = time.monotonic()
    with pytest.raises(AppwriteUnavailable, match=r"no answer within 0\.3s"):
        made.size(name)
    assert time.monotonic() - started < 1.5
    server.inject(500, "general_server_error", path="/download", delay=2.0)
    handle = made.open(name)
    with pytest.raises(AppwriteUnavailable):
        handle.read()


def test_wrong_endpoint_path_is_explained(server: AppwriteTestServer) -> None:
    made = AppwriteStorage(
        **server.storage_options(endpoint=server.endpoint.removesuffix("/v1"), bucket_id="b")
    )
    with pytest.raises(Exception, match="/v1"):
        made.exists("x.txt")


def test_busy_answers_are_retried(server: AppwriteTestServer, storage: AppwriteStorage) -> None:
    storage.save("busy/first.txt", ContentFile(b"1"))
    server.inject(429, "general_rate_limit_exceeded", method="POST", times=2)
    name = storage.save("busy/second.txt", ContentFile(b"2"))
    assert read(storage, name) == b"2"
    server.inject(429, "general_rate_limit_exceeded", method="GET", times=2)
    assert storage.exists(name)
    server.inject(429, "general_rate_limit_exceeded", path="/download", times=1)
    assert read(storage, name) == b"2"


def test_a_busy_chunk_is_sent_again(server: AppwriteTestServer, storage: AppwriteStorage) -> None:
    payload = os.urandom(16 * MiB)
    storage.save("chunky/first.txt", ContentFile(b"1"))
    # The third chunk POST is refused once; chunks are idempotent, so only it is resent.
    server.inject(429, "general_rate_limit_exceeded", method="POST", after=2, times=1)
    server.clear_log()
    name = storage.save("chunky/big.bin", ContentFile(payload))
    posts = [(r.status, r.bytes_received) for r in server.requests if r.method == "POST"]
    assert len(posts) == 5  # 4 chunks and one repeat
    assert sum(1 for status, _ in posts if status == 429) == 1
    assert read(storage, name) == payload


def test_chunk_uploads_use_the_sdk_wire_format(server: AppwriteTestServer, sdk: SDKStorage) -> None:
    """Headers and form fields of our chunk POSTs are those the SDK sends."""
    with AppwriteTestServer(log_headers=True) as logged:
        made = AppwriteStorage(
            **logged.storage_options(bucket_id="default", file_permissions=['read("any")'])
        )
        made.save("wire/big file.bin", ContentFile(os.urandom(6 * MiB)))
        posts = [r for r in logged.requests if r.method == "POST" and r.status == 201]
        chunk = posts[-1].headers
        assert chunk["content-range"].startswith("bytes ")
        assert chunk["x-appwrite-id"] == file_id_for("big file.bin")
        assert chunk["x-sdk-name"] == "Python"
        assert chunk["x-appwrite-response-format"] == "2.5.0"
        assert chunk["user-agent"].startswith("AppwritePythonSDK/27.")
        assert chunk["content-type"].startswith("multipart/form-data; boundary=")
        stored = SDKStorage(logged.client()).get_file("wire", chunk["x-appwrite-id"])
        assert stored.name == "big file.bin"
        assert stored.permissions == ['read("any")']


def test_a_taken_id_is_renamed(server: AppwriteTestServer, storage: AppwriteStorage) -> None:
    storage.save("race/first.txt", ContentFile(b"1"))
    # As if another writer took the ID between the availability check and the upload.
    server.inject(409, "storage_file_already_exists", method="POST", times=1)
    name = storage.save("race/x.txt", ContentFile(b"mine"))
    assert name.startswith("race/x_")
    assert read(storage, name) == b"mine"


@pytest.mark.parametrize("size", [1000, 7 * MiB], ids=["small", "chunked"])
def test_concurrent_saves_of_one_name_keep_every_content(
    storage: AppwriteStorage, size: int
) -> None:
    storage.save("same/seed.txt", ContentFile(b"seed"))
    payloads = [os.urandom(size) for _ in range(4)]
    names: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(payloads))

    def save(payload: bytes) -> None:
        barrier.wait()
        try:
            names.append(storage.save("same/name.bin", ContentFile(payload)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(names)) == len(payloads)
    assert sorted(read(storage, n) for n in names) == sorted(payloads)


def test_rejected_upload_is_a_clear_error(
    server: AppwriteTestServer, storage: AppwriteStorage, sdk: SDKStorage
) -> None:
    sdk.create_bucket("tiny", "tiny", maximum_file_size=10)
    with pytest.raises(Exception, match="storage_invalid_file_size"):
        storage.save("tiny/big.txt", ContentFile(b"x" * 100))


def race(storages: list[AppwriteStorage], name: str, payloads: list[bytes]) -> list[str]:
    """Save one name from each storage at the same moment; return the stored names."""
    names: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(storages))

    def save(made: AppwriteStorage, payload: bytes) -> None:
        barrier.wait()
        try:
            names.append(made.save(name, ContentFile(payload)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=save, args=pair) for pair in zip(storages, payloads, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    return names


def test_two_processes_racing_on_one_large_name_never_mix_contents(
    server: AppwriteTestServer,
) -> None:
    """Separate storages (no shared in-process lock) upload one new name at once."""
    storages = [AppwriteStorage(**server.storage_options()) for _ in range(3)]
    storages[0].save("cross/seed.txt", ContentFile(b"seed"))
    for round_number in range(3):
        payloads = [os.urandom(11 * MiB) for _ in storages]
        names = race(storages, f"cross/r{round_number}.bin", payloads)
        assert len(set(names)) == len(storages)
        assert sorted(read(storages[0], n) for n in names) == sorted(payloads)


def test_bad_content_and_names(storage: AppwriteStorage) -> None:
    with pytest.raises(TypeError, match="ContentFile"):
        storage.save("bad/text.txt", "not a file")
    with pytest.raises(TypeError, match="ContentFile"):
        storage.save("bad/bytes.bin", b"raw bytes")
    with pytest.raises(SuspiciousFileOperation):
        storage.save(None, ContentFile(b"x"))
    with pytest.raises(SuspiciousFileOperation):
        storage.save("", ContentFile(b"x"))
    with pytest.raises(SuspiciousFileOperation):
        storage.exists(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="url"):
        storage.url(None)
    # A file-like object without chunks() is wrapped, as Django's Storage.save does.
    name = storage.save("bad/raw.bin", io.BytesIO(b"raw"))
    assert read(storage, name) == b"raw"


def test_the_first_upload_into_a_missing_bucket_sends_the_content_once(
    server: AppwriteTestServer, storage: AppwriteStorage
) -> None:
    payload = b"x" * 4096
    assert storage.save("fresh/first.bin", ContentFile(payload)) == "fresh/first.bin"
    calls = [(r.method, r.path, r.status) for r in server.requests]
    assert calls == [
        ("GET", "/v1/storage/buckets/fresh/files/first.bin", 404),
        ("POST", "/v1/storage/buckets", 201),
        ("POST", "/v1/storage/buckets/fresh/files", 201),
    ]
    assert sum(r.bytes_received for r in server.requests if r.path.endswith("/files")) < 5000


def test_reuse_scope_is_the_bucket_and_location_is_endpoint_and_project() -> None:
    made = AppwriteStorage(
        api_key="secret-key",
        project_id="proj",
        bucket_id="default",
        endpoint="https://Cloud.Appwrite.IO:443/v1",
    )
    assert made.dedupstore_reuse_scope("assets/statics/probemedia/t.txt") == "probemedia"
    assert made.dedupstore_reuse_scope("probe3/logo.png") == "probe3"
    assert made.dedupstore_reuse_scope("top.txt") == "default"
    location = made.dedupstore_location()
    assert location == "appwrite:https://cloud.appwrite.io/v1#project=proj"
    assert "secret-key" not in location
    other_bucket = AppwriteStorage(
        api_key="k2", project_id="proj", bucket_id="b2", endpoint="https://cloud.appwrite.io/v1"
    )
    assert other_bucket.dedupstore_location() == location
    port = AppwriteStorage(api_key="k", project_id="p", endpoint="http://127.0.0.1:8765/v1")
    assert port.dedupstore_location() == "appwrite:http://127.0.0.1:8765/v1#project=p"


def test_it_is_a_dedup_backend_that_dedupstorage_talks_to_directly(
    storage: AppwriteStorage,
) -> None:
    assert isinstance(storage, DedupBackend)
    assert backend_of(storage) is storage
    # Free names are <bucket>/<fileId>, written without a second existence check.
    assert storage.dedupstore_direct_save is True
    assert storage.content_addressed is False
