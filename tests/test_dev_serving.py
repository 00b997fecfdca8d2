"""The development view and URL helper: the links a storage gives resolve, in DEBUG only.

Over ``DedupStorage`` on ``FileSystemStorage`` with a real Redis index, and over the raw
IPFS storage on an isolated embedded node, through Django's test ``Client``.
"""

from __future__ import annotations

import hashlib
import os
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage
from django.test import Client
from django.utils.http import http_date

from dedupstore import DedupStorage
from dedupstore.urls import storage_urlpatterns
from dedupstore.views import BLOCK_SIZE, IMMUTABLE_CACHE

MIB = 1024 * 1024


def body(response: Any) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return bytes(response.content)


def payload(size: int, seed: int = 0) -> bytes:
    """Return ``size`` bytes that differ at every offset, so a wrong slice shows."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.blake2b(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


@pytest.fixture
def serve_at(settings: Any) -> Callable[..., Client]:
    """Route ``prefix`` to a storage through ``storage_urlpatterns``, with DEBUG on."""

    def route(storage: Storage | str, prefix: str = "media/") -> Client:
        settings.DEBUG = True
        urlconf = types.ModuleType("dev_serving_urls")
        urlconf.urlpatterns = storage_urlpatterns(prefix, storage)  # type: ignore[attr-defined]
        assert urlconf.urlpatterns, "DEBUG is on: the helper must return a pattern"  # type: ignore[attr-defined]
        settings.ROOT_URLCONF = urlconf
        return Client()

    return route


@pytest.fixture
def dedup(make_fs_dedup: Callable[..., DedupStorage]) -> DedupStorage:
    return make_fs_dedup()


@pytest.fixture
def client(dedup: DedupStorage, serve_at: Callable[..., Client]) -> Client:
    return serve_at(dedup)


# -- DedupStorage over FileSystemStorage, Redis index ------------------------------------


def test_a_saved_file_is_served_with_its_type_length_and_validators(
    dedup: DedupStorage, client: Client
) -> None:
    name = dedup.save("docs/report.pdf", ContentFile(b"%PDF-1.7 hello"))
    response = client.get(f"/media/{name}")
    assert response.status_code == 200
    assert response.streaming
    assert body(response) == b"%PDF-1.7 hello"
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Length"] == "14"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Accept-Ranges"] == "bytes"
    assert response["Cache-Control"] == "no-cache"
    assert response["ETag"].startswith('"') and response["ETag"].endswith('"')
    assert response["Last-Modified"] == http_date(dedup.get_modified_time(name).timestamp())
    assert "Content-Disposition" not in response


def test_two_names_of_one_content_share_an_etag_and_other_content_does_not(
    dedup: DedupStorage, client: Client, tmp_path: Path
) -> None:
    first = dedup.save("a.txt", ContentFile(b"same bytes"))
    # A second DedupStorage over the same files and index with reuse="never" stores the
    # same bytes under a second name: both names carry the content's ETag.
    second = DedupStorage(
        inner=dedup.inner_config, index=dedup.index_url, namespace=dedup.namespace, reuse="never"
    ).save("b.txt", ContentFile(b"same bytes"))
    other = dedup.save("c.txt", ContentFile(b"other bytes"))
    assert first != second
    etags = [client.get(f"/media/{name}")["ETag"] for name in (first, second, other)]
    assert etags[0] == etags[1] != etags[2]


def test_files_are_served_while_the_index_is_down_with_a_weak_etag(
    tmp_path: Path, serve_at: Callable[..., Client]
) -> None:
    from dedupstore.testing.redis import find_free_port

    inner = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "down")},
    }
    FileSystemStorage(location=str(tmp_path / "down")).save("kept.txt", ContentFile(b"kept"))
    # Nothing listens on this port: every index call fails at once.
    storage = DedupStorage(
        inner=inner, index=f"redis://127.0.0.1:{find_free_port()}/0", wait_timeout=1
    )
    client = serve_at(storage)
    response = client.get("/media/kept.txt")
    assert response.status_code == 200
    assert body(response) == b"kept"
    assert response["ETag"].startswith('W/"')
    assert client.get("/media/kept.txt", HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304


def test_a_matching_if_none_match_or_if_modified_since_gives_304_without_a_body(
    dedup: DedupStorage, client: Client
) -> None:
    name = dedup.save("notes.txt", ContentFile(b"some notes"))
    first = client.get(f"/media/{name}")
    revalidated = client.get(f"/media/{name}", HTTP_IF_NONE_MATCH=first["ETag"])
    assert revalidated.status_code == 304
    assert revalidated.content == b""
    assert revalidated["ETag"] == first["ETag"]
    since = client.get(f"/media/{name}", HTTP_IF_MODIFIED_SINCE=first["Last-Modified"])
    assert since.status_code == 304
    stale = client.get(f"/media/{name}", HTTP_IF_NONE_MATCH='"not-this-one"')
    assert stale.status_code == 200 and body(stale) == b"some notes"


def test_an_overwritten_name_gets_a_new_etag(
    make_fs_dedup: Callable[..., DedupStorage], serve_at: Callable[..., Client]
) -> None:
    storage = make_fs_dedup(overwrite=True)
    client = serve_at(storage)
    name = storage.save("logo.png", ContentFile(b"version 1"))
    before = client.get(f"/media/{name}")["ETag"]
    assert storage.save("logo.png", ContentFile(b"version 2")) == name
    after = client.get(f"/media/{name}", HTTP_IF_NONE_MATCH=before)
    assert after.status_code == 200
    assert body(after) == b"version 2" and after["ETag"] != before


def test_a_range_of_a_multi_mib_file_is_served_as_206_with_the_exact_slice(
    dedup: DedupStorage, client: Client
) -> None:
    data = payload(6 * MIB + 123)
    name = dedup.save("big/archive.bin", ContentFile(data))
    start, end = 3 * MIB - 7, 5 * MIB + 11
    response = client.get(f"/media/{name}", HTTP_RANGE=f"bytes={start}-{end}")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
    assert response["Content-Length"] == str(end - start + 1)
    chunks = list(response.streaming_content)
    assert b"".join(chunks) == data[start : end + 1]
    # Streamed block by block: never the whole range, let alone the file, at once.
    assert len(chunks) > 1 and max(len(chunk) for chunk in chunks) <= BLOCK_SIZE


def test_open_ended_and_suffix_ranges_are_served(dedup: DedupStorage, client: Client) -> None:
    data = payload(2 * MIB, seed=1)
    name = dedup.save("tail.bin", ContentFile(data))
    tail = client.get(f"/media/{name}", HTTP_RANGE="bytes=-1000")
    assert tail.status_code == 206 and body(tail) == data[-1000:]
    assert tail["Content-Range"] == f"bytes {len(data) - 1000}-{len(data) - 1}/{len(data)}"
    rest = client.get(f"/media/{name}", HTTP_RANGE=f"bytes={MIB}-")
    assert rest.status_code == 206 and body(rest) == data[MIB:]
    past_end = client.get(f"/media/{name}", HTTP_RANGE=f"bytes=10-{10 * MIB}")
    assert past_end.status_code == 206 and body(past_end) == data[10:]


def test_a_range_past_the_end_is_416_with_the_size(dedup: DedupStorage, client: Client) -> None:
    name = dedup.save("small.txt", ContentFile(b"0123456789"))
    response = client.get(f"/media/{name}", HTTP_RANGE="bytes=10-20")
    assert response.status_code == 416
    assert response["Content-Range"] == "bytes */10"
    assert client.get(f"/media/{name}", HTTP_RANGE="bytes=-0").status_code == 416


def test_several_or_malformed_ranges_and_a_stale_if_range_give_the_whole_file(
    dedup: DedupStorage, client: Client
) -> None:
    name = dedup.save("whole.txt", ContentFile(b"0123456789"))
    for header in ("bytes=0-1,4-5", "bytes=5-2", "items=0-3", "bytes=x-y"):
        response = client.get(f"/media/{name}", HTTP_RANGE=header)
        assert response.status_code == 200, header
        assert body(response) == b"0123456789"
    etag = client.get(f"/media/{name}")["ETag"]
    fresh = client.get(f"/media/{name}", HTTP_RANGE="bytes=2-3", HTTP_IF_RANGE=etag)
    assert fresh.status_code == 206 and body(fresh) == b"23"
    stale = client.get(f"/media/{name}", HTTP_RANGE="bytes=2-3", HTTP_IF_RANGE='"old"')
    assert stale.status_code == 200 and body(stale) == b"0123456789"


def test_head_gives_the_headers_without_a_body_and_other_methods_are_refused(
    dedup: DedupStorage, client: Client
) -> None:
    name = dedup.save("head.csv", ContentFile(b"a,b\n1,2\n"))
    head = client.head(f"/media/{name}")
    assert head.status_code == 200
    assert head.content == b""
    assert head["Content-Length"] == "8" and head["Content-Type"] == "text/csv"
    assert client.post(f"/media/{name}").status_code == 405
    assert client.delete(f"/media/{name}").status_code == 405
    assert dedup.exists(name)


def test_filename_sets_the_type_and_an_inline_or_attachment_disposition(
    dedup: DedupStorage, client: Client
) -> None:
    name = dedup.save("blob", ContentFile(b"\x89PNG\r\n\x1a\n..."))
    plain = client.get(f"/media/{name}")
    assert plain["Content-Type"] == "application/octet-stream"
    named = client.get(f"/media/{name}", {"filename": "logo.png"})
    assert named["Content-Type"] == "image/png"
    assert named["Content-Disposition"] == 'inline; filename="logo.png"'
    download = client.get(f"/media/{name}", {"filename": "Prüfung 1.png", "download": "true"})
    assert download["Content-Disposition"] == ("attachment; filename*=utf-8''Pr%C3%BCfung%201.png")
    # Only a base name counts: a path in ?filename= opens nothing else.
    pathy = client.get(f"/media/{name}", {"filename": "../../etc/passwd.txt"})
    assert pathy["Content-Disposition"] == 'inline; filename="passwd.txt"'
    assert body(pathy) == b"\x89PNG\r\n\x1a\n..."
    assert client.get(f"/media/{name}", {"filename": "bad\r\nname.txt"}).status_code == 400


def test_active_documents_are_sandboxed_and_compressed_files_keep_their_encoding(
    dedup: DedupStorage, client: Client
) -> None:
    page = dedup.save("page.html", ContentFile(b"<script>alert(1)</script>"))
    response = client.get(f"/media/{page}")
    assert response["Content-Type"] == "text/html"
    assert response["Content-Security-Policy"] == "sandbox"
    svg = client.get(f"/media/{page}", {"filename": "x.svg"})
    assert svg["Content-Type"] == "image/svg+xml" and svg["Content-Security-Policy"] == "sandbox"
    archive = dedup.save("backup.tar.gz", ContentFile(b"\x1f\x8b fake gzip"))
    gz = client.get(f"/media/{archive}")
    assert gz["Content-Type"] == "application/gzip"
    assert "Content-Encoding" not in gz
    assert "Content-Security-Policy" not in gz


def test_traversal_and_aliased_names_are_refused(
    dedup: DedupStorage, client: Client, tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_bytes(b"outside the storage")
    dedup.save("inside/ok.txt", ContentFile(b"inside"))
    attempts = [
        "/media/../secret.txt",
        "/media/%2e%2e/secret.txt",
        "/media/inside/../../secret.txt",
        "/media/inside/%2E%2E/%2E%2E/secret.txt",
        "/media/..%2fsecret.txt",
        "/media/..%5csecret.txt",
        "/media/" + str(tmp_path / "secret.txt"),  # //tmp/...: absolute
        "/media/%2F" + str(tmp_path / "secret.txt").lstrip("/"),
        "/media/inside//ok.txt",
        "/media/inside/./ok.txt",
        "/media/inside/ok.txt%00.png",
    ]
    for attempt in attempts:
        response = client.get(attempt)
        assert response.status_code == 400, attempt
        assert b"outside the storage" not in body(response), attempt
    assert client.get("/media/inside/ok.txt").status_code == 200


def test_a_missing_name_or_an_empty_path_is_404(dedup: DedupStorage, client: Client) -> None:
    assert client.get("/media/nothing-here.txt").status_code == 404
    assert client.get("/media/").status_code == 404
    dedup.save("folder/file.txt", ContentFile(b"x"))
    assert client.get("/media/folder").status_code == 404


def test_a_storage_alias_is_resolved_at_request_time(
    settings: Any, redis_url: str, tmp_path: Path, serve_at: Callable[..., Client]
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "served": {
            "BACKEND": "dedupstore.DedupStorage",
            "OPTIONS": {
                "inner": {
                    "BACKEND": "django.core.files.storage.FileSystemStorage",
                    "OPTIONS": {"location": str(tmp_path / "aliased")},
                },
                "index": redis_url,
            },
        },
    }
    from django.core.files.storage import storages

    name = storages["served"].save("via/alias.txt", ContentFile(b"by alias"))
    client = serve_at("served")
    assert body(client.get(f"/media/{name}")) == b"by alias"


def test_nothing_is_served_when_debug_is_off(
    settings: Any, dedup: DedupStorage, serve_at: Callable[..., Client]
) -> None:
    settings.DEBUG = False
    assert storage_urlpatterns("media/", dedup) == []
    assert storage_urlpatterns("http://cdn.example/media/", dedup) == []
    # A pattern wired while DEBUG was on stops serving once it is off.
    client = serve_at(dedup)
    name = dedup.save("debug.txt", ContentFile(b"debug only"))
    assert client.get(f"/media/{name}").status_code == 200
    settings.DEBUG = False
    assert client.get(f"/media/{name}").status_code == 404


def test_an_empty_prefix_is_a_configuration_error(settings: Any) -> None:
    settings.DEBUG = True
    with pytest.raises(ImproperlyConfigured):
        storage_urlpatterns("", "default")


def test_the_links_url_gives_resolve_under_media_url(
    settings: Any, redis_url: str, tmp_path: Path, serve_at: Callable[..., Client]
) -> None:
    settings.MEDIA_URL = "/media/"
    storage = DedupStorage(
        inner={
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "m"), "base_url": "/media/"},
        },
        index=redis_url,
    )
    client = serve_at(storage, prefix=settings.MEDIA_URL)
    name = storage.save("über/ein bild.jpg", ContentFile(b"\xff\xd8\xff jpeg"))
    response = client.get(storage.url(name))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert body(response) == b"\xff\xd8\xff jpeg"


# -- the raw IPFS storage on an isolated embedded node -----------------------------------


@pytest.fixture(scope="module")
def ipfs_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from dedupstore.backends.ipfs.embedded import get_node, stop_all_nodes

    node = get_node(tmp_path_factory.mktemp("dev-serving-ipfs") / "repo")
    node.start()
    yield node
    stop_all_nodes([node])


@pytest.fixture
def ipfs(ipfs_node: Any) -> Storage:
    # The raw (not reference-counted) IPFS storage; IPFSStorage names it in every version.
    from dedupstore.backends.ipfs import IPFSStorage

    return IPFSStorage(
        embedded_repo=str(ipfs_node.repo), gateway_url="http://testserver/ipfs/", timeout=30
    )


def test_an_ipfs_cid_is_served_immutable_with_a_strong_etag_and_no_dates(
    ipfs: Storage, serve_at: Callable[..., Client]
) -> None:
    client = serve_at(ipfs, prefix="ipfs/")
    data = payload(3 * MIB + 5, seed=2)
    cid = ipfs.save("photo.jpg", ContentFile(data))
    response = client.get(ipfs.url(cid))
    assert response.status_code == 200
    assert body(response) == data
    assert response["Content-Type"] == "application/octet-stream"  # a CID has no extension
    assert response["Cache-Control"] == IMMUTABLE_CACHE
    assert response["X-Content-Type-Options"] == "nosniff"
    assert not response["ETag"].startswith("W/")
    assert "Last-Modified" not in response
    again = client.get(f"/ipfs/{cid}", HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304


def test_an_ipfs_cid_with_filename_is_typed_and_ranged(
    ipfs: Storage, serve_at: Callable[..., Client]
) -> None:
    client = serve_at(ipfs, prefix="ipfs/")
    data = payload(5 * MIB, seed=3)
    cid = ipfs.save("clip.mp4", ContentFile(data))
    start, end = 256 * 1024 - 1, 4 * MIB + 17  # across UnixFS block boundaries
    response = client.get(f"/ipfs/{cid}?filename=clip.mp4", HTTP_RANGE=f"bytes={start}-{end}")
    assert response.status_code == 206
    assert response["Content-Type"] == "video/mp4"
    assert response["Content-Disposition"] == 'inline; filename="clip.mp4"'
    assert response["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
    chunks = list(response.streaming_content)
    assert b"".join(chunks) == data[start : end + 1]
    assert max(len(chunk) for chunk in chunks) <= BLOCK_SIZE


def test_ipfs_names_that_are_no_cid_or_not_on_the_node_are_404(
    ipfs: Storage, serve_at: Callable[..., Client]
) -> None:
    client = serve_at(ipfs, prefix="ipfs/")
    not_a_cid = client.get("/ipfs/not-a-cid")
    assert not_a_cid.status_code == 404
    assert b"is not a name of this storage" in not_a_cid.content
    # A valid CID of content this isolated node never saw: no peers, so not found at once.
    absent = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    missing = client.get(f"/ipfs/{absent}")
    assert missing.status_code == 404
    assert b"is not in the storage" in missing.content
    assert client.get("/ipfs/../etc/passwd").status_code == 400


def test_the_ipfs_url_with_url_filename_resolves(
    ipfs_node: Any, serve_at: Callable[..., Client]
) -> None:
    from dedupstore.backends.ipfs import IPFSStorage

    storage = IPFSStorage(
        embedded_repo=str(ipfs_node.repo),
        gateway_url="http://testserver/ipfs/",
        url_filename=True,
        wrap_with_directory=True,
    )
    client = serve_at(storage, prefix="ipfs/")
    name = storage.save("report.pdf", ContentFile(b"%PDF-1.4 wrapped"))
    url = storage.url(name)
    assert url.startswith("http://testserver/ipfs/") and "filename=report.pdf" in url
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert body(response) == b"%PDF-1.4 wrapped"


def test_a_dedupstorage_over_ipfs_serves_its_cids_immutable(
    ipfs_node: Any, redis_url: str, serve_at: Callable[..., Client]
) -> None:
    storage = DedupStorage(
        inner={
            "BACKEND": "dedupstore.backends.ipfs.IPFSStorage",
            "OPTIONS": {"embedded_repo": str(ipfs_node.repo)},
        },
        index=redis_url,
    )
    client = serve_at(storage, prefix="ipfs/")
    cid = storage.save("a.txt", ContentFile(b"counted on ipfs"))
    response = client.get(f"/ipfs/{cid}")
    assert body(response) == b"counted on ipfs"
    assert response["Cache-Control"] == IMMUTABLE_CACHE


@pytest.mark.skipif(os.name != "posix", reason="POSIX file names")
def test_a_name_with_a_backslash_is_refused_as_traversal(
    dedup: DedupStorage, client: Client
) -> None:
    assert client.get("/media/inside\\..\\..\\secret.txt").status_code == 400
