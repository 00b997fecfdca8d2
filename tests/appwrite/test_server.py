"""The Appwrite test server against the real ``appwrite`` SDK 27: no mocks, real HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest
import requests
from appwrite.exception import AppwriteException
from appwrite.input_file import InputFile
from appwrite.query import Query
from appwrite.services.storage import Storage as SDKStorage

from dedupstore.testing.appwrite import CHUNK_SIZE, AppwriteTestServer, sniff_mime_type

MiB = 1024 * 1024


def raw(server: AppwriteTestServer, method: str, path: str, **kwargs: object) -> requests.Response:
    """Send a request the way the SDK does, but keep the whole response for inspection."""
    headers = {
        "X-Appwrite-Project": server.project_id,
        "X-Appwrite-Key": server.api_key,
        **kwargs.pop("headers", {}),  # type: ignore[dict-item]
    }
    return requests.request(method, server.endpoint + path, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


def error_of(call: object) -> AppwriteException:
    with pytest.raises(AppwriteException) as info:
        call()  # type: ignore[operator]
    return info.value


def send_chunk(
    server: AppwriteTestServer, bucket: str, file_id: str, data: bytes, index: int, name: str
) -> requests.Response:
    start = index * CHUNK_SIZE
    end = min(start + CHUNK_SIZE, len(data))
    return raw(
        server,
        "POST",
        f"/storage/buckets/{bucket}/files",
        headers={"content-range": f"bytes {start}-{end - 1}/{len(data)}", "x-appwrite-id": file_id},
        files={"fileId": (None, file_id), "file": (name, data[start:end])},
    )


# -- uploads ---------------------------------------------------------------------------


def test_small_upload_returns_a_complete_file(sdk: SDKStorage, bucket: str) -> None:
    created = sdk.create_file(
        bucket, "file1", InputFile.from_bytes(b"hello world", "hello.txt"), ['read("any")']
    )
    assert created.id == "file1"
    assert created.bucketid == bucket
    assert created.name == "hello.txt"
    assert created.key == "hello.txt"
    assert created.signature == hashlib.md5(b"hello world").hexdigest()
    assert created.mimetype == "text/plain"
    assert created.sizeoriginal == 11.0
    assert (created.chunkstotal, created.chunksuploaded) == (1.0, 1.0)
    assert created.permissions == ['read("any")']
    assert created.createdat.endswith("+00:00")
    assert sdk.get_file_download(bucket, "file1") == b"hello world"
    assert sdk.get_file(bucket, "file1").signature == created.signature


def test_chunked_upload_over_20_mib(
    server: AppwriteTestServer, sdk: SDKStorage, bucket: str, tmp_path: Path
) -> None:
    payload = os.urandom(21 * MiB + 12345)
    path = tmp_path / "big.bin"
    path.write_bytes(payload)
    server.clear_log()
    created = sdk.create_file(bucket, "bigfile", InputFile.from_path(str(path)))
    assert created.chunksuploaded == created.chunkstotal == 5.0
    assert created.signature == hashlib.md5(payload).hexdigest()
    assert created.sizeoriginal == len(payload)
    assert created.mimetype == "application/octet-stream"

    methods = [(r.method, r.status) for r in server.requests]
    # The resume probe (a GET with a 38-byte multipart body), then 5 chunk POSTs.
    assert methods[0] == ("GET", 404)
    assert server.requests[0].bytes_received == 38
    assert methods[1:] == [("POST", 201)] * 5
    assert server.bytes_received >= len(payload)
    assert sdk.get_file_download(bucket, "bigfile") == payload


def test_chunks_out_of_order_and_repeated_are_idempotent(
    server: AppwriteTestServer, sdk: SDKStorage, bucket: str
) -> None:
    payload = os.urandom(3 * CHUNK_SIZE - 100)
    for index in (2, 0, 2, 0):
        response = send_chunk(server, bucket, "ooo", payload, index, "ooo.bin")
        assert response.status_code == 201
        assert response.json()["signature"] == ""
    partial = sdk.get_file(bucket, "ooo")
    assert (partial.chunksuploaded, partial.chunkstotal) == (2.0, 3.0)
    assert partial.sizeoriginal == len(payload)
    # An incomplete file is listed but cannot be downloaded.
    assert error_of(lambda: sdk.get_file_download(bucket, "ooo")).type == "storage_file_not_found"

    final = send_chunk(server, bucket, "ooo", payload, 1, "ooo.bin").json()
    assert final["chunksUploaded"] == 3
    assert final["signature"] == hashlib.md5(payload).hexdigest()
    assert sdk.get_file_download(bucket, "ooo") == payload
    # A chunk sent to a completed file is answered 200 with the file.
    again = send_chunk(server, bucket, "ooo", payload, 0, "ooo.bin")
    assert again.status_code == 200
    assert again.json()["chunksUploaded"] == 3


def test_resumed_upload_sends_only_the_missing_chunks(
    server: AppwriteTestServer, sdk: SDKStorage, bucket: str, tmp_path: Path
) -> None:
    payload = os.urandom(3 * CHUNK_SIZE + 7)
    path = tmp_path / "resume.bin"
    path.write_bytes(payload)
    # An earlier upload stopped after its first chunk.
    assert send_chunk(server, bucket, "resume", payload, 0, "resume.bin").status_code == 201
    server.clear_log()
    created = sdk.create_file(bucket, "resume", InputFile.from_path(str(path)))
    assert created.chunksuploaded == 4
    probe, *posts = server.requests
    assert (probe.method, probe.status) == ("GET", 200)
    assert len(posts) == 3  # chunks 2..4 only
    assert sdk.get_file_download(bucket, "resume") == payload

    # Uploading a complete large file again returns it from the probe: no POST, no 409.
    server.clear_log()
    again = sdk.create_file(bucket, "resume", InputFile.from_path(str(path)))
    assert again.id == "resume"
    assert [r.method for r in server.requests] == ["GET"]


def test_boundary_sizes(sdk: SDKStorage, bucket: str, server: AppwriteTestServer) -> None:
    exact = os.urandom(CHUNK_SIZE)
    server.clear_log()
    sdk.create_file(bucket, "exact", InputFile.from_bytes(exact, "exact.bin"))
    assert [r.method for r in server.requests] == ["POST"]
    plus_one = os.urandom(CHUNK_SIZE + 1)
    created = sdk.create_file(bucket, "plus1", InputFile.from_bytes(plus_one, "plus1.bin"))
    assert created.chunkstotal == 2
    assert sdk.get_file_download(bucket, "plus1") == plus_one


def test_parallel_uploads_of_many_files(sdk: SDKStorage, bucket: str, tmp_path: Path) -> None:
    payloads = {f"par{i}": os.urandom(CHUNK_SIZE * 2 + i) for i in range(4)}
    errors: list[BaseException] = []

    def upload(file_id: str) -> None:
        path = tmp_path / file_id
        path.write_bytes(payloads[file_id])
        try:
            sdk.create_file(bucket, file_id, InputFile.from_path(str(path)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(file_id,)) for file_id in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for file_id, payload in payloads.items():
        assert sdk.get_file_download(bucket, file_id) == payload


# -- errors ----------------------------------------------------------------------------


def test_wrong_key(server: AppwriteTestServer, bucket: str) -> None:
    wrong = SDKStorage(server.client(api_key="not-the-key"))
    error = error_of(lambda: wrong.get_file(bucket, "anything"))
    assert (error.code, error.type) == (401, "user_unauthorized")
    error = error_of(lambda: wrong.list_buckets())
    assert (error.code, error.type) == (401, "user_unauthorized")


def test_no_key_lacks_the_bucket_scope(server: AppwriteTestServer) -> None:
    response = raw(server, "GET", "/storage/buckets", headers={"X-Appwrite-Key": ""})
    assert response.status_code == 401
    assert response.json()["type"] == "general_unauthorized_scope"
    assert "buckets.read" in response.json()["message"]


def test_wrong_project_is_checked_before_the_key(server: AppwriteTestServer) -> None:
    other = SDKStorage(server.client(project_id="other-project", api_key="wrong"))
    error = error_of(lambda: other.list_buckets())
    assert (error.code, error.type) == (404, "project_not_found")
    assert "X-Appwrite-Project" in error.message


def test_missing_bucket_and_file(sdk: SDKStorage, bucket: str) -> None:
    error = error_of(lambda: sdk.get_file("nope", "x"))
    assert (error.code, error.type) == (404, "storage_bucket_not_found")
    error = error_of(lambda: sdk.create_file("nope", "x", InputFile.from_bytes(b"1", "x.txt")))
    assert error.type == "storage_bucket_not_found"
    for call in (sdk.get_file, sdk.get_file_download, sdk.get_file_view, sdk.delete_file):
        error = error_of(lambda call=call: call(bucket, "missing"))
        assert (error.code, error.type) == (404, "storage_file_not_found")
        assert error.message == "The requested file could not be found."


def test_error_bodies_are_exact(server: AppwriteTestServer, bucket: str) -> None:
    response = raw(server, "GET", f"/storage/buckets/{bucket}/files/missing")
    assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert response.headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
    body = response.json()
    assert set(body) == {"message", "code", "type", "version"}
    assert body["code"] == 404 and isinstance(body["code"], int)
    assert body["type"] == "storage_file_not_found"


def test_invalid_ids(server: AppwriteTestServer, sdk: SDKStorage, bucket: str) -> None:
    error = error_of(lambda: sdk.get_file(bucket, "_leading"))
    assert (error.code, error.type) == (400, "general_argument_invalid")
    assert "fileId" in error.message
    error = error_of(lambda: sdk.create_file(bucket, "x" * 37, InputFile.from_bytes(b"1", "a")))
    assert (error.code, error.type) == (400, "general_argument_invalid")
    error = error_of(lambda: sdk.create_bucket("bad id", "name"))
    assert error.type == "general_argument_invalid"
    # The literal unique() is fine in the body but not in x-appwrite-id.
    payload = os.urandom(CHUNK_SIZE + 10)
    error = error_of(
        lambda: sdk.create_file(bucket, "unique()", InputFile.from_bytes(payload, "u.bin"))
    )
    assert (error.code, error.type) == (400, "storage_invalid_appwrite_id")
    small = sdk.create_file(bucket, "unique()", InputFile.from_bytes(b"small", "u.txt"))
    assert len(small.id) == 20


def test_duplicate_ids_are_409(sdk: SDKStorage, bucket: str) -> None:
    sdk.create_file(bucket, "dup", InputFile.from_bytes(b"one", "one.txt"))
    error = error_of(lambda: sdk.create_file(bucket, "dup", InputFile.from_bytes(b"2", "2.txt")))
    assert (error.code, error.type) == (409, "storage_file_already_exists")
    error = error_of(lambda: sdk.create_bucket(bucket, "again"))
    assert (error.code, error.type) == (409, "storage_bucket_already_exists")
    assert sdk.get_file_download(bucket, "dup") == b"one"


def test_bucket_limits(sdk: SDKStorage, server: AppwriteTestServer) -> None:
    sdk.create_bucket("limited", "Limited", maximum_file_size=100, allowed_file_extensions=["txt"])
    error = error_of(lambda: sdk.create_file("limited", "a", InputFile.from_bytes(b"x", "a.bin")))
    assert (error.code, error.type, error.message) == (
        400,
        "storage_file_type_unsupported",
        "File extension not allowed",
    )
    error = error_of(
        lambda: sdk.create_file("limited", "b", InputFile.from_bytes(b"x" * 101, "b.txt"))
    )
    assert (error.type, error.message) == ("storage_invalid_file_size", "File size not allowed")
    # A chunked upload of an oversized file fails on its first chunk.
    server.clear_log()
    error = error_of(
        lambda: sdk.create_file(
            "limited", "c", InputFile.from_bytes(b"y" * (CHUNK_SIZE * 2), "c.txt")
        )
    )
    assert error.type == "storage_invalid_file_size"
    assert [r.method for r in server.requests] == ["GET", "POST"]
    error = error_of(lambda: sdk.create_bucket("toobig", "x", maximum_file_size=10**12))
    assert error.type == "general_argument_invalid"
    error = error_of(lambda: sdk.create_bucket("noname", ""))
    assert error.code == 400


def test_busy_upload_is_429_with_retry_after(server: AppwriteTestServer, bucket: str) -> None:
    server.inject(429, "general_rate_limit_exceeded", method="POST", headers={"Retry-After": "5"})
    response = raw(
        server,
        "POST",
        f"/storage/buckets/{bucket}/files",
        files={"fileId": (None, "busy"), "file": ("busy.txt", b"data")},
    )
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "5"
    assert response.json()["message"] == "File upload is busy. Try again."


def test_a_held_upload_lock_answers_429(bucket: str, sdk: SDKStorage) -> None:
    with AppwriteTestServer(upload_lock_timeout=0.05) as quick:
        quick_sdk = SDKStorage(quick.client())
        quick_sdk.create_bucket("b", "b")
        with quick._upload_lock("b", "locked"):
            error = error_of(
                lambda: quick_sdk.create_file("b", "locked", InputFile.from_bytes(b"1", "l.txt"))
            )
        assert (error.code, error.type) == (429, "general_rate_limit_exceeded")
        assert quick_sdk.create_file("b", "locked", InputFile.from_bytes(b"1", "l.txt")).id


def test_unknown_route_is_an_html_page(server: AppwriteTestServer) -> None:
    error = error_of(lambda: server.client().call("get", "/nothing/here"))
    assert error.code == 404
    assert error.type is None


# -- downloads -------------------------------------------------------------------------


def test_range_downloads(server: AppwriteTestServer, sdk: SDKStorage, bucket: str) -> None:
    payload = os.urandom(12 * MiB)
    sdk.create_file(bucket, "ranged", InputFile.from_bytes(payload, "ranged.bin"))
    path = f"/storage/buckets/{bucket}/files/ranged/download"
    response = raw(server, "GET", path, headers={"Range": "bytes=100-199"})
    assert response.status_code == 206
    assert response.content == payload[100:200]
    assert response.headers["Content-Range"] == f"bytes 100-199/{len(payload)}"
    assert response.headers["Content-Type"] == "application/octet-stream"
    # An open range is cut to 10 MiB, as Appwrite does.
    response = raw(server, "GET", path, headers={"Range": "bytes=0-"})
    assert response.status_code == 206
    assert response.content == payload[: 10 * MiB]
    # Appwrite rejects a one-byte range and an end past the last byte.
    for bad in ("bytes=5-5", f"bytes=0-{len(payload)}", "items=0-10", "bytes=-10"):
        response = raw(server, "GET", path, headers={"Range": bad})
        assert response.status_code == 416, bad
        assert response.json()["type"] == "storage_invalid_range"
    full = raw(server, "GET", path)
    assert full.status_code == 200 and full.content == payload
    assert full.headers["Content-Disposition"] == 'attachment; filename="ranged.bin"'


def test_json_file_download_is_parsed_by_the_sdk(sdk: SDKStorage, bucket: str) -> None:
    document = {"hello": ["world", 1]}
    sdk.create_file(bucket, "doc", InputFile.from_bytes(json.dumps(document).encode(), "d.json"))
    assert sdk.get_file(bucket, "doc").mimetype == "application/json"
    # Faithful to real Appwrite: the download's Content-Type is the sniffed JSON type.
    assert sdk.get_file_download(bucket, "doc") == document
    # /view is not on the allow-list for JSON, so it answers text/plain: bytes.
    assert sdk.get_file_view(bucket, "doc") == json.dumps(document).encode()


def test_view_content_types(server: AppwriteTestServer, sdk: SDKStorage, bucket: str) -> None:
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(64)
    sdk.create_file(bucket, "img", InputFile.from_bytes(png, "i.png"))
    sdk.create_file(bucket, "page", InputFile.from_bytes(b"<html><b>x</b></html>", "p.html"))
    view = raw(server, "GET", f"/storage/buckets/{bucket}/files/img/view")
    assert view.headers["Content-Type"] == "image/png"
    assert view.headers["X-Content-Type-Options"] == "nosniff"
    view = raw(server, "GET", f"/storage/buckets/{bucket}/files/page/view")
    assert view.headers["Content-Type"] == "text/plain"
    download = raw(server, "GET", f"/storage/buckets/{bucket}/files/page/download")
    assert download.headers["Content-Type"] == "text/html"
    assert sdk.get_file_preview(bucket, "img", width=10) == png
    assert sdk.get_file_preview(bucket, "page").startswith(b"\x89PNG")


def test_guests_need_permissions(server: AppwriteTestServer, sdk: SDKStorage) -> None:
    sdk.create_bucket("public", "Public", permissions=['read("any")'])
    sdk.create_bucket("private", "Private")
    for bucket in ("public", "private"):
        sdk.create_file(bucket, "f", InputFile.from_bytes(b"data", "f.txt"))
    query = {"project": server.project_id}
    public = requests.get(
        f"{server.endpoint}/storage/buckets/public/files/f/view", params=query, timeout=10
    )
    assert (public.status_code, public.content) == (200, b"data")
    private = requests.get(
        f"{server.endpoint}/storage/buckets/private/files/f/view",
        headers={"X-Appwrite-Project": server.project_id},
        timeout=10,
    )
    assert private.status_code == 401
    assert private.json()["type"] == "user_unauthorized"


# -- lists -----------------------------------------------------------------------------


def test_lists_pages_and_queries(sdk: SDKStorage, bucket: str) -> None:
    for i in range(30):
        sdk.create_file(bucket, f"f{i:02d}", InputFile.from_bytes(f"n{i}".encode(), f"n{i}.txt"))
    first = sdk.list_files(bucket)
    assert first.total == 30
    assert [f.id for f in first.files] == [f"f{i:02d}" for i in range(25)]

    seen: list[str] = []
    cursor: str | None = None
    while True:
        queries = [Query.limit(7)] + ([Query.cursor_after(cursor)] if cursor else [])
        page = sdk.list_files(bucket, queries=queries)
        seen += [f.id for f in page.files]
        if len(page.files) < 7:
            break
        cursor = page.files[-1].id
    assert seen == [f"f{i:02d}" for i in range(30)]

    page = sdk.list_files(bucket, queries=[Query.limit(3), Query.offset(28)])
    assert [f.id for f in page.files] == ["f28", "f29"]
    page = sdk.list_files(bucket, queries=[Query.order_desc("name"), Query.limit(2)])
    assert [f.name for f in page.files] == ["n9.txt", "n8.txt"]
    page = sdk.list_files(bucket, queries=[Query.equal("name", ["n3.txt", "n4.txt"])])
    assert (page.total, [f.id for f in page.files]) == (2, ["f03", "f04"])
    page = sdk.list_files(bucket, queries=[Query.starts_with("name", "n2")])
    assert page.total == 11  # n2 and n20..n29
    page = sdk.list_files(bucket, queries=[Query.equal("$id", "f05")], total=False)
    assert (page.total, len(page.files)) == (0, 1)
    page = sdk.list_files(bucket, search="n7")
    assert [f.id for f in page.files] == ["f07"]

    error = error_of(lambda: sdk.list_files(bucket, queries=[Query.equal("bucketId", "x")]))
    assert (error.code, error.type) == (400, "general_argument_invalid")
    error = error_of(lambda: sdk.list_files(bucket, queries=[Query.cursor_after("nope")]))
    assert (error.code, error.type) == (400, "general_cursor_not_found")
    error = error_of(lambda: sdk.list_files(bucket, queries=["not json"]))
    assert error.type == "general_argument_invalid"


def test_bucket_routes(sdk: SDKStorage) -> None:
    created = sdk.create_bucket(
        "bkt2", "Two", permissions=['write("any")'], file_security=True, enabled=True
    )
    assert created.permissions == ['create("any")', 'update("any")', 'delete("any")']
    assert created.maximumfilesize == 30_000_000
    assert sdk.get_bucket("bkt2").name == "Two"
    assert sdk.update_bucket("bkt2", "Renamed").name == "Renamed"
    assert sdk.list_buckets(queries=[Query.equal("name", "Renamed")]).total == 1
    sdk.create_file("bkt2", "f", InputFile.from_bytes(b"x", "x.txt"))
    assert sdk.delete_bucket("bkt2") == b""
    assert error_of(lambda: sdk.get_bucket("bkt2")).type == "storage_bucket_not_found"


def test_update_and_delete_file(server: AppwriteTestServer, sdk: SDKStorage, bucket: str) -> None:
    sdk.create_file(bucket, "f", InputFile.from_bytes(b"x", "x.txt"), ['write("any")'])
    updated = sdk.update_file(bucket, "f", name="renamed.txt")
    assert updated.name == "renamed.txt"
    assert updated.permissions == ['update("any")', 'delete("any")']
    response = raw(server, "DELETE", f"/storage/buckets/{bucket}/files/f", json={})
    assert response.status_code == 204
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.content == b""
    assert error_of(lambda: sdk.delete_file(bucket, "f")).type == "storage_file_not_found"


def test_request_log_counts_requests_and_bytes(
    server: AppwriteTestServer, sdk: SDKStorage, bucket: str
) -> None:
    server.clear_log()
    sdk.create_file(bucket, "c", InputFile.from_bytes(b"z" * 1000, "c.txt"))
    sdk.get_file_download(bucket, "c")
    assert server.request_count == 2
    assert server.bytes_received > 1000
    assert server.requests[1].bytes_sent == 1000


def test_mime_sniffing_approximates_libmagic() -> None:
    assert sniff_mime_type(b"") == "application/x-empty"
    assert sniff_mime_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_mime_type(b"%PDF-1.7") == "application/pdf"
    assert sniff_mime_type(b'{"a": 1}', whole=b'{"a": 1}') == "application/json"
    assert sniff_mime_type(b"{not json", whole=b"{not json") == "text/plain"
    assert sniff_mime_type("héllo".encode()) == "text/plain"
    assert sniff_mime_type(b"\x00\x01\x02") == "application/octet-stream"


def test_the_public_fixture(appwrite_server: AppwriteTestServer) -> None:
    """``dedupstore.testing.appwrite.appwrite_server`` works as a user's fixture."""
    assert appwrite_server.endpoint.startswith("http://127.0.0.1:")
    assert appwrite_server.endpoint.endswith("/v1")
    sdk = SDKStorage(appwrite_server.client())
    assert sdk.create_bucket("fixture", "Fixture").id == "fixture"
    assert appwrite_server.request_count == 1


def test_reset_forgets_everything(server: AppwriteTestServer, sdk: SDKStorage) -> None:
    sdk.create_bucket("gone", "Gone")
    sdk.create_file("gone", "f", InputFile.from_bytes(b"x", "x.txt"))
    path = server.file_path("gone", "f")
    assert path.exists()
    server.reset()
    assert server.bucket_ids() == [] and server.request_count == 0
    assert not path.exists()
