"""Options: keyword arguments with Django-setting fallbacks, failing loudly when wrong."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage, storages

from dedupstore.backends.ipfs import IPFSStorage
from dedupstore.backends.ipfs.transports import _RPCTransport, _SharedTransport

CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


def test_defaults_point_at_the_local_daemon_and_ipfs_io() -> None:
    storage = IPFSStorage()
    assert storage.api_url == "http://127.0.0.1:5001"
    assert storage.url(CID) == f"https://ipfs.io/ipfs/{CID}"
    assert storage.timeout == 30.0
    assert storage.wrap_with_directory is False
    assert storage._transport is None  # nothing built until first use
    assert isinstance(storage.transport, _RPCTransport)


@pytest.mark.parametrize(
    "setting", ["IPFS_STORAGE_GATEWAY_URL", "IPFS_STORAGE_GATEWAY_API_URL", "IPFS_GATEWAY_API_URL"]
)
def test_every_gateway_setting_spelling(settings, setting: str) -> None:  # type: ignore[no-untyped-def]
    setattr(settings, setting, "https://gw.example/ipfs/")
    assert IPFSStorage().url(CID) == f"https://gw.example/ipfs/{CID}"


def test_settings_fallbacks(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.IPFS_STORAGE_API_URL = "/ip4/127.0.0.1/tcp/5999"
    settings.IPFS_STORAGE_API_AUTH = "Bearer from-settings"
    settings.IPFS_STORAGE_TIMEOUT = "7.5"
    settings.IPFS_STORAGE_WRAP_WITH_DIRECTORY = True
    settings.IPFS_STORAGE_GATEWAY_STYLE = "subdomain"
    settings.IPFS_STORAGE_URL_FILENAME = True
    storage = IPFSStorage()
    assert storage.transport.client.base_url == "http://127.0.0.1:5999/api/v0"  # type: ignore[union-attr]
    assert storage.timeout == 7.5
    assert storage.wrap_with_directory and storage.url_filename
    assert storage.gateway_style == "subdomain"
    # Keywords beat settings.
    assert IPFSStorage(timeout=2).timeout == 2.0
    settings.IPFS_STORAGE_API_AUTH = None
    settings.IPFS_STORAGE_EMBEDDED_REPO = str(tmp_path / "repo")
    embedded = IPFSStorage()
    assert isinstance(embedded.transport, _SharedTransport)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"bogus": 1}, "unknown IPFS storage option"),
        ({"location": "/tmp"}, "unknown IPFS storage option"),
        ({"api_url": "ftp://x"}, "api_url"),
        ({"api_url": "/ip4/127.0.0.1/udp/5001"}, "api_url"),
        ({"gateway_url": "ipfs.io"}, "gateway_url"),
        ({"gateway_style": "dns"}, "gateway_style"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "soon"}, "timeout"),
        ({"wrap_with_directory": "yes"}, "wrap_with_directory"),
        ({"embedded_online": True}, "embedded_repo"),
        ({"embedded_repo": "/tmp/r", "api_url": "/ip4/127.0.0.1/tcp/5001"}, "not both"),
        ({"embedded_repo": "/tmp/r", "api_auth": "Bearer x"}, "api_auth"),
        ({"api_auth": 42}, "api_auth"),
    ],
)
def test_bad_options_are_improperly_configured(options: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ImproperlyConfigured, match=match):
        IPFSStorage(**options)


def test_bad_setting_is_improperly_configured(settings) -> None:  # type: ignore[no-untyped-def]
    settings.IPFS_STORAGE_TIMEOUT = -1
    with pytest.raises(ImproperlyConfigured, match="timeout"):
        IPFSStorage()


def test_deconstruct_never_contains_the_auth_value() -> None:
    storage = IPFSStorage(api_url="http://127.0.0.1:5001", api_auth="Bearer secret", timeout=3)
    path, args, kwargs = storage.deconstruct()
    assert path == "dedupstore.backends.ipfs.IPFSStorage"
    assert args == ()
    assert kwargs == {"api_url": "http://127.0.0.1:5001", "timeout": 3}
    clone = pickle.loads(pickle.dumps(storage))
    assert clone._transport is None and clone.timeout == 3


def test_works_as_the_default_storage(settings, shared_node) -> None:  # type: ignore[no-untyped-def]
    # The default alias is configured through the old package's setting: under
    # override_settings Django 4.2 drops STORAGES["default"]["OPTIONS"].
    settings.IPFS_STORAGE_EMBEDDED_REPO = str(shared_node.repo)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "dedupstore.backends.ipfs.IPFSStorage"},
    }
    assert isinstance(storages["default"], IPFSStorage)
    name = default_storage.save("docs/default.txt", ContentFile(b"default storage"))
    assert default_storage.open(name).read() == b"default storage"


@pytest.mark.django_db
def test_a_model_file_field_stores_the_cid(settings, shared_node) -> None:  # type: ignore[no-untyped-def]
    from tests.testapp.models import Document

    # The default alias is configured through the old package's setting: under
    # override_settings Django 4.2 drops STORAGES["default"]["OPTIONS"].
    settings.IPFS_STORAGE_EMBEDDED_REPO = str(shared_node.repo)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "dedupstore.backends.ipfs.IPFSStorage"},
    }
    doc = Document.objects.create(file=ContentFile(b"model content", name="m.txt"))
    doc.refresh_from_db()
    assert doc.file.name.startswith("bafk")  # CIDv1 of one raw block
    assert doc.file.read() == b"model content"
    assert doc.file.url.endswith(f"/ipfs/{doc.file.name}")  # the local gateway
    assert doc.file.url.startswith("http://127.0.0.1:")
