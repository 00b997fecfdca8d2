"""Secrets stay out of error messages, migrations and pickles."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.db.migrations.writer import MigrationWriter

from dedupstore import DedupStorage
from dedupstore.index import mask_url

INNER = {"BACKEND": "django.core.files.storage.InMemoryStorage"}


@pytest.mark.parametrize("password", ["pa/ss", "pa#ss", "pa?ss", "p@ss/w#o?rd", "s3cret"])
def test_a_redis_password_with_url_delimiters_is_masked_in_configuration_errors(
    password: str,
) -> None:
    url = f"redis://user:{password}@cache.internal:bad/0"
    with pytest.raises(ImproperlyConfigured) as caught:
        DedupStorage(inner=INNER, index=url)
    assert password not in str(caught.value)
    assert password not in mask_url(f"redis://:{password}@cache.internal:6379/0")
    assert "cache.internal" in mask_url(f"redis://:{password}@cache.internal:6379/0")


@pytest.mark.parametrize(
    ("options", "secret"),
    [
        (
            {
                "connection_string": "DefaultEndpointsProtocol=https;AccountName=acct;"
                "AccountKey=QUNDT1VOVEtFWQ==;EndpointSuffix=core.windows.net"
            },
            "QUNDT1VOVEtFWQ==",
        ),
        ({"azure": "AccountName=acct;AccountKey=QUNDT1VOVEtFWQ=="}, "QUNDT1VOVEtFWQ=="),
        ({"dsn": "postgres://app:db-pa55@db.internal/app"}, "db-pa55"),
        ({"server": "postgres://app:db-pa55@db.internal/app"}, "db-pa55"),
        ({"pwd": "hunter2"}, "hunter2"),
        ({"passwd": "hunter2"}, "hunter2"),
        ({"params": "host=db user=app password=hunter2"}, "hunter2"),
        ({"nested": {"endpoints": ["https://svc:t0ken@api.internal/v1"]}}, "t0ken"),
    ],
)
def test_credentials_inside_values_stay_out_of_migrations(
    options: dict[str, Any], secret: str
) -> None:
    storage = DedupStorage(
        inner={"BACKEND": "some.Storage", "OPTIONS": {"bucket": "b", **options}},
        index="locmem://",
        namespace="n",
    )
    serialized, _ = MigrationWriter.serialize(storage)
    assert secret not in serialized
    assert "'bucket': 'b'" in serialized
    # Stable: deconstructing the migration's storage gives the same text (no churn).
    _path, _args, kwargs = storage.deconstruct()
    assert MigrationWriter.serialize(DedupStorage(**kwargs))[0] == serialized


def test_values_without_credentials_are_kept_as_they_are() -> None:
    options = {"base_url": "https://cdn.example.org/media/", "location": "a@b/c", "n": 3}
    storage = DedupStorage(
        inner={"BACKEND": "some.Storage", "OPTIONS": options}, index="locmem://", namespace="n"
    )
    assert storage.deconstruct()[2]["inner"]["OPTIONS"] == options


def test_a_pickle_holds_no_option_that_came_from_settings(settings: Any, redis_url: str) -> None:
    password_url = redis_url.replace("redis://", "redis://:never-pickled@")
    settings.DEDUPSTORE_INNER = INNER
    settings.DEDUPSTORE_INDEX = password_url
    settings.DEDUPSTORE_HASH_KEY = "hash-key-never-pickled"
    settings.DEDUPSTORE_NAMESPACE = "pickled"
    storage = DedupStorage()
    data = pickle.dumps(storage)
    assert b"never-pickled" not in data
    # Unpickled, the storage reads the settings of the process it is in.
    settings.DEDUPSTORE_INDEX = redis_url
    clone = pickle.loads(data)
    assert clone.index_url == redis_url
    assert clone._hash_key_option == "hash-key-never-pickled"
    assert clone.save("a.txt", ContentFile(b"x")) == "a.txt"


def test_a_pickle_of_an_explicitly_configured_storage_holds_its_explicit_options(
    redis_url: str,
) -> None:
    storage = DedupStorage(inner=INNER, index=redis_url, namespace="explicit", hash_key="k1")
    clone = pickle.loads(pickle.dumps(storage))
    assert (clone.index_url, clone.namespace, clone._hash_key_option) == (
        redis_url,
        "explicit",
        "k1",
    )


def test_a_pickled_appwrite_storage_reads_its_api_key_from_settings_again(settings: Any) -> None:
    from dedupstore.backends.appwrite import AppwriteStorage

    settings.APPWRITE_API_KEY = "appwrite-key-never-pickled"
    settings.APPWRITE_PROJECT_ID = "project"
    settings.APPWRITE_BUCKET_ID = "bucket"
    storage = AppwriteStorage(endpoint="http://127.0.0.1:1/v1")
    data = pickle.dumps(storage)
    assert b"appwrite-key-never-pickled" not in data
    settings.APPWRITE_API_KEY = "rotated"
    assert pickle.loads(data).api_key == "rotated"


def test_a_password_in_the_url_query_stays_out_of_migrations() -> None:
    storage = DedupStorage(
        inner={"BACKEND": "django.core.files.storage.InMemoryStorage"},
        index="redis://127.0.0.1:6379/0?password=hunter2&db=1",
    )
    assert "hunter2" not in repr(storage.deconstruct())


def test_secrets_inside_lists_stay_out_of_migrations() -> None:
    storage = DedupStorage(
        inner={
            "BACKEND": "django.core.files.storage.InMemoryStorage",
            "OPTIONS": {
                "servers": [{"host": "a", "password": "hunter2"}, ("b", {"token": "t0ken"})],
                "api_keys": ["k3y-one", "k3y-two"],
                "credentials": {"user": "alice", "secret": "s3cr3t"},
                "location": ["kept", 1],
            },
        },
        index="locmem://redact",
    )
    _path, _args, kwargs = storage.deconstruct()
    text = repr(kwargs)
    for secret in ("hunter2", "t0ken", "k3y-one", "k3y-two", "s3cr3t"):
        assert secret not in text
    options = kwargs["inner"]["OPTIONS"]
    assert options["servers"][0] == {"host": "a", "password": "***"}
    assert options["servers"][1] == ("b", {"token": "***"})
    assert options["api_keys"] == ["***", "***"]
    assert options["credentials"] == {"user": "***", "secret": "***"}  # all under a secret
    assert options["location"] == ["kept", 1]
    # Redacting is stable: deconstructing the deconstructed storage changes nothing.
    assert DedupStorage(**kwargs).deconstruct()[2] == kwargs
