"""``InterPlanetaryFileSystemStorage``, written as django-ipfs-storage's README says, counts
references: a CID stays pinned while any record uses it, and goes with the last one.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.db import connection, models
from django.test.utils import isolate_apps

from dedupstore import DedupStorage, IndexUnavailable
from dedupstore.backends.ipfs import InterPlanetaryFileSystemStorage, IPFSStorage
from dedupstore.backends.ipfs.embedded import EmbeddedNode

#: Generous: a first save may start a node on a busy machine.
DEADLINE = 60.0


@pytest.fixture
def old_readme_node(
    settings: Any, make_node: Callable[[], EmbeddedNode], redis_url: str
) -> EmbeddedNode:
    """A fresh node configured by settings only (the old README passes no arguments)."""
    node = make_node()
    settings.IPFS_STORAGE_EMBEDDED_REPO = str(node.repo)
    settings.DEDUPSTORE_INDEX = redis_url
    return node


@pytest.fixture
def record_model(old_readme_node: EmbeddedNode) -> Iterator[type[models.Model]]:
    """A model with the old README's field, its table created for the test."""
    with isolate_apps("tests.testapp"):

        class IPFSRecord(models.Model):
            file_stored_on_ipfs = models.FileField(storage=InterPlanetaryFileSystemStorage())

            class Meta:
                app_label = "testapp"

        with connection.schema_editor() as editor:
            editor.create_model(IPFSRecord)
        try:
            yield IPFSRecord
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(IPFSRecord)


def _delete_row(record: models.Model) -> None:
    # What django-cleanup (or an app's post_delete handler) does when a row goes.
    record.file_stored_on_ipfs.delete(save=False)  # type: ignore[attr-defined]
    record.delete()


@pytest.mark.django_db(transaction=True)
def test_deleting_one_of_two_rows_keeps_the_cid_pinned_and_the_last_one_unpins_it(
    record_model: type[models.Model], old_readme_node: EmbeddedNode
) -> None:
    payload = os.urandom(5000)
    first = record_model.objects.create(file_stored_on_ipfs=ContentFile(payload, name="a.bin"))
    second = record_model.objects.create(file_stored_on_ipfs=ContentFile(payload, name="b.bin"))
    cid = first.file_stored_on_ipfs.name  # type: ignore[attr-defined]
    assert cid.startswith("bafk")  # CIDv1, raw leaf
    assert second.file_stored_on_ipfs.name == cid  # type: ignore[attr-defined]
    storage = first._meta.get_field("file_stored_on_ipfs").storage
    assert isinstance(storage, InterPlanetaryFileSystemStorage)
    assert storage.references(cid) == 2

    _delete_row(first)
    assert cid in old_readme_node.pins(), "unpinned while another row uses it"
    survivor = record_model.objects.get()
    with survivor.file_stored_on_ipfs.open("rb") as handle:  # type: ignore[attr-defined]
        assert handle.read() == payload
    assert storage.references(cid) == 1

    _delete_row(survivor)
    assert cid not in old_readme_node.pins()
    assert not storage.exists(cid)
    assert storage.references(cid) == 0


def test_the_raw_storage_unpins_at_once(shared_node: EmbeddedNode) -> None:
    raw = IPFSStorage(embedded_repo=str(shared_node.repo))
    cid = raw.save("x.bin", ContentFile(b"raw: no reference counting"))
    assert raw.save("y.bin", ContentFile(b"raw: no reference counting")) == cid
    raw.delete(cid)
    assert cid not in shared_node.pins()


def test_it_deconstructs_to_the_old_call_without_secrets(settings: Any) -> None:
    settings.IPFS_STORAGE_API_AUTH = "Bearer from-settings"
    assert InterPlanetaryFileSystemStorage().deconstruct() == (
        "dedupstore.backends.ipfs.InterPlanetaryFileSystemStorage",
        (),
        {},
    )
    storage = InterPlanetaryFileSystemStorage(
        api_url="/ip4/127.0.0.1/tcp/5001", api_auth="Bearer secret", timeout=3
    )
    path, args, kwargs = storage.deconstruct()
    assert (path, args) == ("dedupstore.backends.ipfs.InterPlanetaryFileSystemStorage", ())
    assert kwargs == {"api_url": "/ip4/127.0.0.1/tcp/5001", "timeout": 3}
    assert "secret" not in repr(storage.deconstruct())
    assert storage.inner._api_auth == "Bearer secret"  # type: ignore[attr-defined]


def test_the_old_positional_arguments_name_the_node_and_the_gateway() -> None:
    storage = InterPlanetaryFileSystemStorage("/ip4/127.0.0.1/tcp/5099", "/ip4/127.0.0.1/tcp/8099")
    inner = storage.inner
    assert isinstance(inner, IPFSStorage)
    assert inner.transport.client.base_url == "http://127.0.0.1:5099/api/v0"  # type: ignore[union-attr]
    assert storage.url("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o").startswith(
        "http://127.0.0.1:8099/ipfs/"
    )
    with pytest.raises(ImproperlyConfigured, match="both by position and by name"):
        InterPlanetaryFileSystemStorage("/ip4/127.0.0.1/tcp/5099", api_url="/ip4/1.2.3.4/tcp/1")


def test_options_go_to_the_right_storage_and_wrong_ones_are_named() -> None:
    storage = InterPlanetaryFileSystemStorage(
        embedded_repo="/srv/ipfs", gateway_url="https://gw.example/ipfs/", index="locmem://x"
    )
    assert storage.inner_config == {
        "BACKEND": "dedupstore.backends.ipfs.IPFSStorage",
        "OPTIONS": {"embedded_repo": "/srv/ipfs", "gateway_url": "https://gw.example/ipfs/"},
    }
    assert storage.index_url == "locmem://x"
    with pytest.raises(ImproperlyConfigured, match="not both"):
        InterPlanetaryFileSystemStorage(inner="ipfs", api_url="/ip4/127.0.0.1/tcp/5001")
    with pytest.raises(ImproperlyConfigured, match="embedded_repo"):
        InterPlanetaryFileSystemStorage(bogus=1)


def test_the_namespace_follows_the_node_not_its_credentials_or_links(tmp_path: Any) -> None:
    def namespace(**options: Any) -> str:
        return InterPlanetaryFileSystemStorage(index="locmem://ns", **options).namespace

    daemon = namespace(api_url="/ip4/127.0.0.1/tcp/5001")
    assert daemon == namespace(api_url="http://localhost:5001/", api_auth="Bearer k", timeout=9)
    assert daemon == namespace(api_url="/ip4/127.0.0.1/tcp/5001", gateway_url="https://g.example")
    assert daemon != namespace(api_url="/ip4/127.0.0.1/tcp/5002")
    repo = tmp_path / "repo"
    (tmp_path / "link").symlink_to(repo, target_is_directory=True)
    assert namespace(embedded_repo=str(repo)) == namespace(embedded_repo=str(tmp_path / "link"))
    assert namespace(embedded_repo=str(repo)) != daemon
    assert namespace(embedded_repo=str(repo), namespace="mine") == "mine"


def test_it_shares_reference_counts_with_a_dedup_storage_over_the_same_node(
    tmp_path: Any,
) -> None:
    repo = str(tmp_path / "repo")
    old = InterPlanetaryFileSystemStorage(embedded_repo=repo, index="locmem://shared-node")
    core = DedupStorage(
        inner={
            "BACKEND": "dedupstore.backends.ipfs.IPFSStorage",
            "OPTIONS": {"embedded_repo": repo},
        },
        index="locmem://shared-node",
    )
    # One node, one set of counts: a delete through either never unpins the other's rows.
    assert old.namespace == core.namespace


def test_without_redis_saves_and_deletes_fail_fast_and_clearly_and_reads_still_work(
    settings: Any, shared_node: EmbeddedNode
) -> None:
    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.DEDUPSTORE_INDEX = f"redis://127.0.0.1:{port}/0"
    settings.IPFS_STORAGE_EMBEDDED_REPO = str(shared_node.repo)
    existing = IPFSStorage().save("old.txt", ContentFile(b"saved before the upgrade"))
    pins_before = set(shared_node.pins())
    storage = InterPlanetaryFileSystemStorage()
    errors: dict[str, BaseException] = {}

    def attempt(label: str, call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:
            errors[label] = exc

    calls = {
        "save": lambda: storage.save("new.txt", ContentFile(b"never stored without an index")),
        "delete": lambda: storage.delete(existing),
        "references": lambda: storage.references(existing),
    }
    for label, call in calls.items():
        worker = threading.Thread(target=attempt, args=(label, call), daemon=True)
        worker.start()
        worker.join(DEADLINE)
        assert not worker.is_alive(), f"{label}() hung without Redis"
        error = errors[label]
        assert isinstance(error, IndexUnavailable), error
        assert f"127.0.0.1:{port}" in str(error)
        assert any("DEDUPSTORE_INDEX" in note for note in getattr(error, "__notes__", []))
    assert set(shared_node.pins()) == pins_before  # nothing added, nothing unpinned
    assert storage.open(existing).read() == b"saved before the upgrade"
    assert storage.url(existing).endswith(existing)
    assert isinstance(storage, DedupStorage)


# Every database: the delete guard asks whether rows (tests.testapp's) still hold a name.
@pytest.mark.django_db(databases="__all__")
def test_as_the_default_storage_it_counts_references_and_passes_the_system_checks(
    settings: Any, old_readme_node: EmbeddedNode
) -> None:
    from django.core import checks
    from django.core.files.storage import default_storage, storages

    # What DEFAULT_FILE_STORAGE = 'ipfs_storage.InterPlanetaryFileSystemStorage' becomes.
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "dedupstore.backends.ipfs.InterPlanetaryFileSystemStorage"},
    }
    assert isinstance(storages["default"], InterPlanetaryFileSystemStorage)
    errors = [m for m in checks.run_checks() if m.level >= checks.ERROR]
    assert errors == []
    cid = default_storage.save("docs/a.txt", ContentFile(b"default, counted"))
    assert default_storage.save("docs/b.txt", ContentFile(b"default, counted")) == cid
    default_storage.delete(cid)
    assert cid in old_readme_node.pins()
    assert default_storage.open(cid).read() == b"default, counted"
    default_storage.delete(cid)
    assert cid not in old_readme_node.pins()


@pytest.mark.django_db(transaction=True)
def test_rows_saved_by_the_old_package_are_counted_by_saving_each_row_s_file_once(
    record_model: type[models.Model], old_readme_node: EmbeddedNode
) -> None:
    # Two rows written before the upgrade: pinned, never counted.
    raw = IPFSStorage()
    cid = raw.save("old.bin", ContentFile(b"saved by django-ipfs-storage"))
    record_model.objects.bulk_create(
        [record_model(file_stored_on_ipfs=cid), record_model(file_stored_on_ipfs=cid)]
    )
    storage = record_model._meta.get_field("file_stored_on_ipfs").storage
    assert storage.references(cid) == 0
    # The recipe of docs/ipfs.md: save each row's file once through the new class.
    for record in record_model.objects.all():
        field_file = record.file_stored_on_ipfs  # type: ignore[attr-defined]
        with field_file.open("rb") as handle:
            assert storage.save(field_file.name, handle) == field_file.name
    assert storage.references(cid) == 2
    first, second = record_model.objects.all()
    _delete_row(first)
    assert cid in old_readme_node.pins()
    _delete_row(second)
    assert cid not in old_readme_node.pins()
