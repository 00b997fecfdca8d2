"""``IPFSStorage.dedupstore_location()``: where the bytes live, for the default namespace.

The embedded repo's real path, or the normalised Kubo RPC API URL; never credentials,
timeouts or link options, and nothing is started or contacted to work it out.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dedupstore.backends.ipfs import IPFSStorage

DAEMON = "ipfs-rpc:http://127.0.0.1:5001/api/v0"


@pytest.mark.parametrize(
    "api_url",
    [
        "/ip4/127.0.0.1/tcp/5001",
        "/ip4/localhost/tcp/5001",  # django-ipfs-storage's README
        "/ip4/0.0.0.0/tcp/5001",  # its documented default
        "http://127.0.0.1:5001",
        "http://localhost:5001/api/v0/",
        "HTTP://LocalHost:5001//api/v0",
        "http://user:password@127.0.0.1:5001",
    ],
)
def test_spellings_of_the_local_daemon_name_one_location(api_url: str) -> None:
    assert IPFSStorage(api_url=api_url).dedupstore_location() == DAEMON


@pytest.mark.parametrize(
    ("api_url", "location"),
    [
        ("https://node.example/", "ipfs-rpc:https://node.example:443/api/v0"),
        ("/dns4/node.example/tcp/443/https", "ipfs-rpc:https://node.example:443/api/v0"),
        ("http://node.example", "ipfs-rpc:http://node.example:80/api/v0"),
        ("/ip6/::1/tcp/5001", "ipfs-rpc:http://[::1]:5001/api/v0"),
        ("http://127.0.0.1:5002", "ipfs-rpc:http://127.0.0.1:5002/api/v0"),
        ("https://proxy.example/tenant-a/", "ipfs-rpc:https://proxy.example:443/tenant-a/api/v0"),
    ],
)
def test_other_daemons_are_other_locations(api_url: str, location: str) -> None:
    assert IPFSStorage(api_url=api_url).dedupstore_location() == location


def test_credentials_timeouts_and_links_change_nothing() -> None:
    tuned = IPFSStorage(
        api_url="/ip4/127.0.0.1/tcp/5001",
        api_auth="Bearer secret-value",
        timeout=3,
        gateway_url="https://gw.example/ipfs/",
        gateway_style="subdomain",
        url_filename=True,
    )
    assert tuned.dedupstore_location() == DAEMON
    assert "secret" not in tuned.dedupstore_location()
    credentials = IPFSStorage(api_url="https://alice:pw@node.example").dedupstore_location()
    assert "alice" not in credentials and "pw" not in credentials


def test_the_embedded_repo_is_named_by_its_real_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "link").symlink_to(repo, target_is_directory=True)
    real = f"ipfs-embedded:{os.path.realpath(repo)}"
    assert IPFSStorage(embedded_repo=str(repo)).dedupstore_location() == real
    assert IPFSStorage(embedded_repo=tmp_path / "link").dedupstore_location() == real
    assert IPFSStorage(embedded_repo=f"{tmp_path}/./link/../repo").dedupstore_location() == real
    monkeypatch.chdir(tmp_path)
    assert IPFSStorage(embedded_repo="link").dedupstore_location() == real
    # A repo that does not exist yet (created on first use) has a location too.
    later = IPFSStorage(embedded_repo=str(tmp_path / "later")).dedupstore_location()
    assert later == f"ipfs-embedded:{os.path.realpath(tmp_path / 'later')}"


def test_working_it_out_starts_no_node_and_opens_no_connection(tmp_path: Path) -> None:
    for storage in (
        IPFSStorage(embedded_repo=str(tmp_path / "never-created")),
        IPFSStorage(api_url="/ip4/127.0.0.1/tcp/9"),
    ):
        storage.dedupstore_location()
        assert storage._transport is None
    assert not (tmp_path / "never-created").exists()
