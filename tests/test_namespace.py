"""The default namespace comes from where the bytes live, however the location is spelled."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.core.management import call_command
from django.test import override_settings

from dedupstore import DedupStorage
from dedupstore.checks import check_namespaces
from dedupstore.namespace import legacy_namespace

ROOT = Path(__file__).resolve().parents[1]
FS = "django.core.files.storage.FileSystemStorage"
S3 = "storages.backends.s3.S3Storage"


def _fs(location: Any = None, **options: Any) -> DedupStorage:
    inner_options = {} if location is None else {"location": location}
    return DedupStorage(inner={"BACKEND": FS, "OPTIONS": inner_options}, **options)


def test_every_spelling_of_one_directory_gives_one_namespace(tmp_path: Path, settings) -> None:
    media = tmp_path / "media"
    (media / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(media)
    settings.MEDIA_ROOT = str(media)
    spellings = {
        "str": _fs(str(media)),
        "Path": _fs(media),
        "trailing slash": _fs(str(media) + "/"),
        "dot-dot": _fs(str(media / "sub" / "..")),
        "symlink": _fs(str(tmp_path / "link")),
        "MEDIA_ROOT implicit": _fs(),
    }
    settings.MEDIA_ROOT = media
    spellings["MEDIA_ROOT a Path setting"] = _fs()
    namespaces = {spelling: storage.namespace for spelling, storage in spellings.items()}
    assert len(set(namespaces.values())) == 1, namespaces
    assert _fs(str(tmp_path / "elsewhere")).namespace not in namespaces.values()


def test_a_delete_through_one_spelling_keeps_an_object_another_spelling_shares(
    tmp_path: Path, redis_url: str
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    one = _fs(str(media), index=redis_url)
    other = _fs(str(media) + "/../media/", index=redis_url)
    name = one.save("a.txt", ContentFile(b"shared by two rows"))
    assert other.save("b.txt", ContentFile(b"shared by two rows")) == name
    assert one.references(name) == 2
    other.delete(name)
    assert (media / name).read_bytes() == b"shared by two rows"


def test_the_namespace_follows_override_settings_of_media_root(
    tmp_path: Path, redis_url: str
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    with override_settings(MEDIA_ROOT=str(first)):
        storage = DedupStorage(inner={"BACKEND": FS}, index=redis_url)
        name = storage.save("a.txt", ContentFile(b"per-test media"))
        before = storage.namespace
    with override_settings(MEDIA_ROOT=str(second)):
        assert storage.namespace != before
        again = storage.save("a.txt", ContentFile(b"per-test media"))
        # Not a hit on the other directory's object: this directory holds its own copy.
        assert (second / again).read_bytes() == b"per-test media"
        assert storage.references(again) == 1
    with override_settings(MEDIA_ROOT=str(first)):
        assert storage.namespace == before
        assert storage.references(name) == 1


S3_BASE: dict[str, Any] = {
    "bucket_name": "media",
    "endpoint_url": "http://127.0.0.1:9000",
    "access_key": "dummy",
    "secret_key": "dummy",
    "location": "uploads",
}


def _s3_variants() -> dict[str, dict[str, Any]]:
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    return {
        "client_config": {"client_config": Config(retries={"max_attempts": 2})},
        "transfer_config": {"transfer_config": TransferConfig(multipart_threshold=8 * 2**20)},
        "querystring_expire": {"querystring_expire": 60},
        "custom_domain": {"custom_domain": "cdn.example.org"},
        "url_protocol": {"url_protocol": "http:"},
        "object_parameters": {"object_parameters": {"CacheControl": "max-age=60"}},
        "default_acl": {"default_acl": "private"},
        "signature_version": {"signature_version": "s3v4"},
        "addressing_style": {"addressing_style": "path"},
        "max_memory_size": {"max_memory_size": 2**20},
        "gzip": {"gzip": True},
        "verify": {"verify": False},
        "file_overwrite": {"file_overwrite": False},
        "endpoint trailing slash": {"endpoint_url": "http://127.0.0.1:9000/"},
        "endpoint localhost": {"endpoint_url": "http://localhost:9000"},
        "endpoint upper case": {"endpoint_url": "HTTP://LOCALHOST:9000"},
        "location trailing slash": {"location": "uploads/"},
        "rotated keys": {"access_key": "other", "secret_key": "other"},
    }


def _s3(**changes: Any) -> DedupStorage:
    pytest.importorskip("storages.backends.s3")
    return DedupStorage(inner={"BACKEND": S3, "OPTIONS": S3_BASE | changes}, index="locmem://")


@pytest.mark.parametrize("variant", sorted(_s3_variants()))
def test_s3_options_that_do_not_move_the_bytes_keep_the_namespace(variant: str) -> None:
    assert _s3(**_s3_variants()[variant]).namespace == _s3().namespace


@pytest.mark.parametrize(
    "changes",
    [
        {"bucket_name": "other"},
        {"location": "elsewhere"},
        {"endpoint_url": "http://127.0.0.1:9001"},
        {"endpoint_url": "http://minio.internal:9000"},
    ],
)
def test_s3_options_that_move_the_bytes_move_the_namespace(changes: dict[str, Any]) -> None:
    assert _s3(**changes).namespace != _s3().namespace


_CHILD = """
import json, sys
import django
django.setup()
from dedupstore import DedupStorage
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
spec = json.loads(sys.argv[1])
options = dict(spec["options"])
if spec["objects"]:
    options["client_config"] = Config(retries={"max_attempts": 2})
    options["transfer_config"] = TransferConfig()
storage = DedupStorage(inner={"BACKEND": spec["backend"], "OPTIONS": options}, index="locmem://")
print(storage.namespace)
"""


def _namespace_in_a_subprocess(backend: str, options: dict[str, Any], objects: bool) -> str:
    spec = json.dumps({"backend": backend, "options": options, "objects": objects})
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, spec],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def test_every_process_derives_the_same_namespace_for_s3_with_client_objects() -> None:
    pytest.importorskip("storages.backends.s3")
    here = _s3(
        client_config=_s3_variants()["client_config"]["client_config"],
        transfer_config=_s3_variants()["transfer_config"]["transfer_config"],
    ).namespace
    assert _namespace_in_a_subprocess(S3, S3_BASE, objects=True) == here
    assert _namespace_in_a_subprocess(S3, S3_BASE, objects=True) == here


def test_every_process_derives_the_same_namespace_for_a_directory(tmp_path: Path) -> None:
    assert _namespace_in_a_subprocess(FS, {"location": str(tmp_path)}, objects=False) == (
        _fs(str(tmp_path) + "/").namespace
    )


class _Elsewhere(Storage):
    """A storage dedupstore cannot place (no location it knows, no hook)."""

    def exists(self, name: str) -> bool:
        return False


class _Placed(_Elsewhere):
    """A storage that says where its bytes live."""

    def __init__(self, where: str = "vault-1") -> None:
        self.where = where

    def dedupstore_location(self) -> str:
        return f"vault:{self.where}"


def test_an_unknown_inner_storage_needs_an_explicit_namespace() -> None:
    storage = DedupStorage(inner={"BACKEND": f"{__name__}._Elsewhere"}, index="locmem://")
    with pytest.raises(ImproperlyConfigured, match=r"cannot tell where .*'namespace': 'media'"):
        storage.namespace  # noqa: B018
    with pytest.raises(ImproperlyConfigured, match="namespace"):
        storage.save("a.txt", ContentFile(b"x"))
    explicit = DedupStorage(
        inner={"BACKEND": f"{__name__}._Elsewhere"}, index="locmem://", namespace="vault"
    )
    assert explicit.namespace == "vault"


def test_an_inner_storage_with_the_location_hook_names_its_own_namespace() -> None:
    def make(where: str) -> DedupStorage:
        inner = {"BACKEND": f"{__name__}._Placed", "OPTIONS": {"where": where}}
        return DedupStorage(inner=inner, index="locmem://")

    assert make("vault-1").namespace == make("vault-1").namespace
    assert make("vault-1").namespace != make("vault-2").namespace


class GoogleCloudStorage(Storage):
    """Stands for django-storages' GoogleCloudStorage (not installed here), by class path."""

    __module__ = "storages.backends.gcloud"

    def __init__(self, bucket_name: str = "b", location: str = "", credentials: Any = None):
        self.bucket_name, self.location, self.credentials = bucket_name, location, credentials


class AzureStorage(Storage):
    """Stands for django-storages' AzureStorage (not installed here), by class path."""

    __module__ = "storages.backends.azure_storage"

    def __init__(self, **options: Any) -> None:
        self.account_name = options.get("account_name")
        self.azure_container = options.get("azure_container")
        self.location = options.get("location", "")
        self.connection_string = options.get("connection_string")
        self.endpoint_suffix = options.get("endpoint_suffix", "core.windows.net")
        self.custom_domain = options.get("custom_domain")
        self.expiration_secs = options.get("expiration_secs")


def _namespace_of(inner: Storage) -> str:
    storage = DedupStorage(inner={"BACKEND": FS}, index="locmem://")
    storage._inner = inner  # the instance stands for what the BACKEND would build
    return storage.namespace


def test_google_cloud_storage_is_placed_by_bucket_and_prefix() -> None:
    base = _namespace_of(GoogleCloudStorage("media", "uploads"))
    assert _namespace_of(GoogleCloudStorage("media", "/uploads/", credentials=object())) == base
    assert _namespace_of(GoogleCloudStorage("media", "other")) != base
    assert _namespace_of(GoogleCloudStorage("assets", "uploads")) != base


def test_azure_storage_is_placed_by_account_container_and_prefix() -> None:
    base = _namespace_of(AzureStorage(account_name="acct", azure_container="media"))
    same = [
        AzureStorage(account_name="acct", azure_container="media", custom_domain="cdn.example"),
        AzureStorage(account_name="acct", azure_container="media", expiration_secs=60),
        AzureStorage(
            connection_string="DefaultEndpointsProtocol=https;AccountName=acct;"
            "AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net",
            azure_container="media",
        ),
    ]
    for storage in same:
        assert _namespace_of(storage) == base
    assert _namespace_of(AzureStorage(account_name="acct", azure_container="other")) != base
    assert _namespace_of(AzureStorage(account_name="other", azure_container="media")) != base


def test_the_system_check_says_what_namespace_to_write(settings) -> None:
    settings.STORAGES = {
        "default": {
            "BACKEND": "dedupstore.DedupStorage",
            "OPTIONS": {"inner": {"BACKEND": f"{__name__}._Elsewhere"}, "index": "locmem://"},
        },
        "fine": {
            "BACKEND": "dedupstore.DedupStorage",
            "OPTIONS": {"inner": {"BACKEND": FS}, "index": "locmem://"},
        },
    }
    messages = check_namespaces()
    assert [message.id for message in messages] == ["dedupstore.E102"]
    assert "STORAGES['default']" in messages[0].obj
    assert '"namespace": "default"' in messages[0].hint


def test_the_namespace_command_prints_the_namespace_and_the_old_default(
    settings, tmp_path: Path
) -> None:
    options = {"inner": {"BACKEND": FS, "OPTIONS": {"location": str(tmp_path)}}}
    settings.STORAGES = {"default": {"BACKEND": "dedupstore.DedupStorage", "OPTIONS": options}}
    storage = DedupStorage(**options)
    old = legacy_namespace(storage)
    assert old is not None and old != storage.namespace
    out = io.StringIO()
    call_command("dedupstore_namespace", stdout=out)
    printed = out.getvalue()
    assert storage.namespace in printed and old in printed
    assert f'"namespace": "{old}"' in printed
    # Pinning the printed namespace keeps it whatever the default becomes.
    assert DedupStorage(**options, namespace=old).namespace == old


def test_the_old_default_of_options_holding_objects_is_reported_unreproducible() -> None:
    pytest.importorskip("storages.backends.s3")
    from botocore.config import Config

    storage = DedupStorage(
        inner={"BACKEND": S3, "OPTIONS": S3_BASE | {"client_config": Config()}},
        index=f"locmem://{uuid.uuid4().hex}",
    )
    assert legacy_namespace(storage) is None
