"""An embedded node's links open: ``url()`` points at a local gateway served from its blocks.

Every link is fetched with a real HTTP client (``requests``, no proxy from the
environment) from the gateway this process serves on ``127.0.0.1``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile

from dedupstore.backends.ipfs import IPFSStorage
from dedupstore.backends.ipfs.embedded import EmbeddedNode
from dedupstore.backends.ipfs.gateway import IMMUTABLE_CACHE_CONTROL, LocalGateway

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(100)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False
    with session:
        yield session


@pytest.fixture
def linked(shared_node: EmbeddedNode) -> IPFSStorage:
    return IPFSStorage(embedded_repo=str(shared_node.repo), url_filename=True)


def test_a_link_opens_with_the_bytes_type_etag_and_immutable_caching(
    linked: IPFSStorage, http: requests.Session
) -> None:
    payload = b"%PDF-1.4 " + os.urandom(700_000)  # three blocks
    name = linked.save("report.pdf", ContentFile(payload))
    url = linked.url(name, filename="report.pdf")
    assert urlsplit(url).hostname == "127.0.0.1"
    response = http.get(url, timeout=60)
    assert response.status_code == 200
    assert response.content == payload
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"].startswith('inline; filename="report.pdf"')
    assert response.headers["ETag"] == f'"{name}"'
    assert response.headers["Cache-Control"] == IMMUTABLE_CACHE_CONTROL
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    again = http.get(url, headers={"If-None-Match": f'"{name}"'}, timeout=60)
    assert again.status_code == 304 and again.content == b""
    head = http.head(url, timeout=60)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(payload))


def test_range_requests_across_block_boundaries(
    linked: IPFSStorage, http: requests.Session
) -> None:
    payload = os.urandom(600_000)
    url = linked.url(linked.save("r.bin", ContentFile(payload)))
    cases = {
        "bytes=262000-262300": (payload[262000:262301], "bytes 262000-262300/600000"),
        "bytes=599990-": (payload[599990:], "bytes 599990-599999/600000"),
        "bytes=-7": (payload[-7:], "bytes 599993-599999/600000"),
        "bytes=599000-9999999": (payload[599000:], "bytes 599000-599999/600000"),
    }
    for header, (expected, content_range) in cases.items():
        response = http.get(url, headers={"Range": header}, timeout=60)
        assert response.status_code == 206, header
        assert response.content == expected, header
        assert response.headers["Content-Range"] == content_range
    unsatisfiable = http.get(url, headers={"Range": "bytes=600000-"}, timeout=60)
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["Content-Range"] == "bytes */600000"


def test_the_filename_query_decides_the_type_and_sniffing_never_says_html(
    linked: IPFSStorage, http: requests.Session
) -> None:
    png = linked.save("x", ContentFile(PNG))
    gateway = linked.url(png).split("?")[0]
    assert http.get(gateway, timeout=60).headers["Content-Type"] == "image/png"
    named = http.get(f"{gateway}?filename=notes.txt", timeout=60)
    assert named.headers["Content-Type"] == "text/plain; charset=utf-8"
    page = linked.save("y", ContentFile(b"<html><script>alert(1)</script></html>"))
    sniffed = http.get(linked.url(page), timeout=60)
    assert sniffed.headers["Content-Type"] == "text/plain; charset=utf-8"
    attachment = http.get(f"{gateway}?filename=a.png&download=true", timeout=60)
    assert attachment.headers["Content-Disposition"].startswith("attachment;")


def test_a_wrapped_name_is_served_by_its_file_name(
    shared_node: EmbeddedNode, http: requests.Session
) -> None:
    storage = IPFSStorage(embedded_repo=str(shared_node.repo), wrap_with_directory=True)
    name = storage.save("notes.txt", ContentFile(b"wrapped text"))
    response = http.get(storage.url(name), timeout=60)
    assert response.content == b"wrapped text"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    listing = http.get(storage.url(name.split("/")[0]), timeout=60)
    assert listing.status_code == 200 and "notes.txt" in listing.text


def test_absent_invalid_and_non_get_requests_are_refused(
    linked: IPFSStorage, http: requests.Session
) -> None:
    base = linked.url("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy").split("?")[0]
    assert http.get(base, timeout=60).status_code == 404
    origin = base.split("/ipfs/")[0]
    assert http.get(f"{origin}/ipfs/not-a-cid", timeout=60).status_code == 400
    assert http.get(f"{origin}/etc/passwd", timeout=60).status_code == 404
    assert http.post(base, data=b"x", timeout=60).status_code == 405


def test_the_gateway_listens_on_loopback_only(shared_node: EmbeddedNode) -> None:
    with LocalGateway(shared_node.repo) as gateway:
        sock = gateway._server.socket
        assert sock.family == socket.AF_INET
        assert sock.getsockname()[0] == "127.0.0.1"


def test_a_configured_gateway_or_a_daemon_turns_the_local_gateway_off(
    shared_node: EmbeddedNode, settings
) -> None:  # type: ignore[no-untyped-def]
    explicit = IPFSStorage(embedded_repo=str(shared_node.repo), gateway_url="https://gw.example/")
    assert not explicit.local_gateway
    settings.IPFS_STORAGE_GATEWAY_API_URL = "https://gw.example"
    assert not IPFSStorage(embedded_repo=str(shared_node.repo)).local_gateway
    assert not IPFSStorage(api_url="http://127.0.0.1:5001").local_gateway
    with pytest.raises(ImproperlyConfigured, match="embedded_repo"):
        IPFSStorage(api_url="http://127.0.0.1:5001", local_gateway=True)
    with pytest.raises(ImproperlyConfigured, match="local_gateway_port"):
        IPFSStorage(embedded_repo=str(shared_node.repo), local_gateway_port=70000)


def test_a_fixed_port_is_used_by_every_storage_of_the_repo(
    shared_node: EmbeddedNode, http: requests.Session
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    first = IPFSStorage(embedded_repo=str(shared_node.repo), local_gateway_port=port)
    second = IPFSStorage(embedded_repo=str(shared_node.repo), local_gateway_port=port)
    name = first.save("p.txt", ContentFile(b"fixed port"))
    assert first.url(name) == second.url(name) == f"http://127.0.0.1:{port}/ipfs/{name}"
    assert http.get(second.url(name), timeout=60).content == b"fixed port"
