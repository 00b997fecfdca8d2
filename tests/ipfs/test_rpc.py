"""The Kubo RPC transport, against a test server that speaks Kubo RPC over an embedded node."""

from __future__ import annotations

import io
import os
import socket

import pytest
from django.core.files.base import ContentFile, File
from django.core.files.uploadedfile import TemporaryUploadedFile

from dedupstore.backends.ipfs import (
    ContentNotFoundError,
    InvalidCIDError,
    IPFSAuthenticationError,
    IPFSConnectionError,
    IPFSRPCError,
    IPFSStorage,
    IPFSTimeoutError,
)
from dedupstore.backends.ipfs.rpc import KuboRPCClient, api_base_url
from dedupstore.testing.kubo_rpc import KuboRPCTestServer

ABSENT = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def read(storage: IPFSStorage, name: str) -> bytes:
    with storage.open(name) as handle:
        return handle.read()


@pytest.mark.parametrize(
    ("address", "base"),
    [
        ("/ip4/127.0.0.1/tcp/5001", "http://127.0.0.1:5001/api/v0"),
        ("/ip6/::1/tcp/5001", "http://[::1]:5001/api/v0"),
        ("/dns/ipfs.internal/tcp/443/https", "https://ipfs.internal:443/api/v0"),
        ("http://127.0.0.1:5001", "http://127.0.0.1:5001/api/v0"),
        ("https://node.example/api/v0/", "https://node.example/api/v0"),
    ],
)
def test_api_url_forms(address: str, base: str) -> None:
    assert api_base_url(address) == base


def test_every_storage_method_over_rpc(
    rpc_storage: IPFSStorage, rpc_server: KuboRPCTestServer
) -> None:
    payload = os.urandom(1_500_000)
    name = rpc_storage.save("a/b.bin", ContentFile(payload))
    assert rpc_storage.save("c.bin", ContentFile(payload)) == name
    assert rpc_storage.exists(name)
    assert rpc_storage.size(name) == len(payload)
    assert read(rpc_storage, name) == payload
    assert name in rpc_storage.listdir("")[1]
    assert rpc_storage.url(name) == f"https://ipfs.io/ipfs/{name}"
    rpc_storage.delete(name)
    assert not rpc_storage.exists(name)
    rpc_storage.delete(name)  # idempotent
    assert all(r.method == "POST" for r in rpc_server.requests)
    commands = {r.command for r in rpc_server.requests}
    assert {"add", "pin/ls", "files/stat", "cat", "pin/rm"} <= commands
    assert "repo/gc" not in commands


def test_add_parameters_and_streaming(
    rpc_storage: IPFSStorage, rpc_server: KuboRPCTestServer
) -> None:
    rpc_storage.save("sized.bin", ContentFile(b"sized" * 1000))

    class Pipe(io.RawIOBase):  # no size: sent chunked
        def __init__(self) -> None:
            self._data = io.BytesIO(b"piped" * 300_000)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            return self._data.readinto(buffer)

    name = rpc_storage.save("pipe.bin", File(Pipe(), name="pipe.bin"))
    assert read(rpc_storage, name) == b"piped" * 300_000
    adds = [r for r in rpc_server.requests if r.command == "add"]
    assert len(adds) == 2
    for request in adds:
        assert request.params["pin"] == ["true"]
        assert request.params["cid-version"] == ["1"]
        assert request.params["raw-leaves"] == ["true"]
    assert "Content-Length" in adds[0].headers
    assert adds[1].headers.get("Transfer-Encoding") == "chunked"


def test_temporary_upload_and_wrap_with_directory(rpc_server: KuboRPCTestServer) -> None:
    storage = IPFSStorage(api_url=rpc_server.url, wrap_with_directory=True)
    upload = TemporaryUploadedFile("r é.pdf", "application/pdf", 0, None)
    upload.write(b"%PDF wrapped over rpc")
    upload.flush()
    try:
        name = storage.save("docs/r é.pdf", upload)
    finally:
        upload.close()
    root, filename = name.split("/")
    assert filename == "r é.pdf"
    assert read(storage, name) == b"%PDF wrapped over rpc"
    assert storage.exists(name)
    assert storage.size(name) == len(b"%PDF wrapped over rpc")
    assert storage.listdir(root) == ([], ["r é.pdf"])
    adds = [r for r in rpc_server.requests if r.command == "add"]
    assert adds[-1].params["wrap-with-directory"] == ["true"]


def test_ranged_reads_use_cat_offset(
    rpc_storage: IPFSStorage, rpc_server: KuboRPCTestServer
) -> None:
    payload = os.urandom(900_000)
    name = rpc_storage.save("r.bin", ContentFile(payload))
    with rpc_storage.open(name) as handle:
        handle.seek(600_000)
        assert handle.read(1000) == payload[600_000:601_000]
        handle.seek(-7, os.SEEK_END)
        assert handle.read() == payload[-7:]
    cats = [r for r in rpc_server.requests if r.command == "cat"]
    assert cats and cats[0].params["offset"] == ["600000"]
    client = KuboRPCClient(rpc_server.url)
    response = client.cat(name, offset=10, length=5)
    assert response.content == payload[10:15]


def test_missing_content_over_rpc_is_not_found_offline(
    rpc_storage: IPFSStorage, rpc_server: KuboRPCTestServer
) -> None:
    assert not rpc_storage.exists(ABSENT)
    with pytest.raises(ContentNotFoundError):
        rpc_storage.size(ABSENT)
    stats = [r for r in rpc_server.requests if r.command in ("files/stat", "pin/ls")]
    assert stats and all(r.params["offline"] == ["true"] for r in stats)
    with pytest.raises(FileNotFoundError):
        rpc_storage.open(ABSENT)


def test_malformed_cid_never_reaches_the_server(
    rpc_storage: IPFSStorage, rpc_server: KuboRPCTestServer
) -> None:
    for method in (rpc_storage.open, rpc_storage.exists, rpc_storage.size, rpc_storage.delete):
        with pytest.raises(InvalidCIDError):
            method("bafy-not-a-cid")
    assert rpc_server.requests == []


def test_authorization_required(shared_node) -> None:  # type: ignore[no-untyped-def]
    secret = "Bearer s3cret-token-value"
    with KuboRPCTestServer(shared_node, auth=secret) as server:
        anonymous = IPFSStorage(api_url=server.url)
        with pytest.raises(IPFSAuthenticationError, match="HTTP 401") as caught:
            anonymous.save("a.txt", ContentFile(b"auth"))
        assert server.url in str(caught.value) and "api_auth" in str(caught.value)

        wrong = IPFSStorage(api_url=server.url, api_auth="Bearer wrong-value")
        with pytest.raises(IPFSAuthenticationError) as caught:
            wrong.exists(ABSENT)
        assert "wrong-value" not in str(caught.value)

        good = IPFSStorage(api_url=server.url, api_auth=secret)
        name = good.save("a.txt", ContentFile(b"auth ok"))
        assert read(good, name) == b"auth ok"
        assert secret not in repr(good.deconstruct())
        assert all(r.headers.get("Authorization") == secret for r in server.requests[-3:])


def test_timeouts_name_the_url(shared_node) -> None:  # type: ignore[no-untyped-def]
    with KuboRPCTestServer(shared_node, delay=2.0) as server:
        storage = IPFSStorage(api_url=server.url, timeout=0.3)
        with pytest.raises(IPFSTimeoutError, match=r"127\.0\.0\.1:\d+/api/v0"):
            storage.exists(ABSENT)
        with pytest.raises(IPFSTimeoutError, match="add"):
            storage.save("slow.txt", ContentFile(b"slow"))
        with pytest.raises(IPFSTimeoutError):
            storage.open(ABSENT)


def test_unreachable_daemon_names_the_url() -> None:
    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    storage = IPFSStorage(api_url=f"/ip4/127.0.0.1/tcp/{port}", timeout=2)
    with pytest.raises(IPFSConnectionError, match=f"127.0.0.1:{port}"):
        storage.save("x.txt", ContentFile(b"x"))


def test_not_a_kubo_endpoint(rpc_server: KuboRPCTestServer) -> None:
    client = KuboRPCClient(rpc_server.url)
    with pytest.raises(IPFSRPCError, match="HTTP 404"):
        client._post("no/such/command")
    assert client.version()["Version"]


def test_exists_below_a_pinned_root_never_asks_kubo_for_an_indirect_pin(
    rpc_server: KuboRPCTestServer,
) -> None:
    # Kubo answers `pin ls <root>/<path>` (or any unpinned CID with --type=all) by walking
    # every recursive pin's DAG: a hit's exists() would slow down with the repository.
    storage = IPFSStorage(api_url=rpc_server.url, wrap_with_directory=True)
    name = storage.save("letter.pdf", ContentFile(b"%PDF wrapped"))
    root = name.split("/")[0]
    rpc_server.requests.clear()
    assert storage.exists(name)
    assert not storage.exists(f"{root}/absent.pdf")
    assert not storage.exists(ABSENT)
    pin_queries = [r for r in rpc_server.requests if r.command == "pin/ls"]
    assert pin_queries
    for query in pin_queries:
        assert query.params["arg"][0].count("/") == 2, query.params  # /ipfs/<root> only
        assert query.params["type"] != ["all"] and query.params["type"] != ["indirect"]
