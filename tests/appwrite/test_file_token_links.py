"""``url()`` links that open private Appwrite files: file tokens, their cache and expiry.

Everything goes over real HTTP: the storage through the real SDK, the links through
``requests`` with no key, as a browser would follow them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from appwrite.exception import AppwriteException
from appwrite.services.tokens import Tokens
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile

from dedupstore.backends.appwrite import AppwriteStorage
from dedupstore.testing.appwrite import AppwriteTestServer


class RecordingCache(LocMemCache):
    """A local-memory cache that remembers the timeout of every ``set``."""

    timeouts: list[Any] = []

    def set(self, key: str, value: Any, timeout: Any = None, version: Any = None) -> None:
        RecordingCache.timeouts.append(timeout)
        super().set(key, value, timeout, version)


@pytest.fixture(autouse=True)
def token_cache(settings: Any) -> Any:
    settings.CACHES = {
        **settings.CACHES,
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "recording": {"BACKEND": f"{__name__}.RecordingCache", "LOCATION": "tokens"},
    }
    RecordingCache.timeouts = []
    caches["default"].clear()
    yield
    caches["default"].clear()
    caches["recording"].clear()


def token_requests(server: AppwriteTestServer) -> int:
    return sum(1 for r in server.requests if r.path.startswith("/v1/tokens/"))


def test_a_link_to_a_private_file_opens_without_a_key(
    storage: AppwriteStorage, server: AppwriteTestServer
) -> None:
    name = storage.save("private/photo.txt", ContentFile(b"only with a token"))
    link = storage.url(name)
    assert parse_qs(urlsplit(link).query)["token"]
    answer = requests.get(link, timeout=30)
    assert answer.status_code == 200 and answer.content == b"only with a token"
    # The same link without its token is Appwrite's 401: the bucket stays private.
    bare = link.split("&token=")[0]
    assert requests.get(bare, timeout=30).status_code == 401


def test_a_page_of_fifty_links_asks_for_tokens_once(
    storage: AppwriteStorage, server: AppwriteTestServer
) -> None:
    names = [storage.save(f"gallery/img{i}.txt", ContentFile(b"%d" % i)) for i in range(50)]
    server.clear_log()
    first_render = [storage.url(name) for name in names]
    assert token_requests(server) == 50
    server.clear_log()
    second_render = [storage.url(name) for name in names]
    assert server.request_count == 0
    assert second_render == first_render
    assert requests.get(second_render[7], timeout=30).content == b"7"


def test_tokens_live_url_expire_seconds_and_leave_the_cache_before_they_expire(
    server: AppwriteTestServer,
) -> None:
    storage = AppwriteStorage(
        **server.storage_options(bucket_id="default", url_expire=600, url_cache="recording")
    )
    name = storage.save("timed/a.txt", ContentFile(b"timed"))
    before = server.now()
    storage.url(name)
    (token,) = server.tokens()
    expire = token["expire"]
    lifetime = datetime.fromisoformat(expire) - before
    assert timedelta(seconds=590) < lifetime <= timedelta(seconds=601)
    # Cached for half its life: every link handed out stays valid at least 300 s.
    assert RecordingCache.timeouts == [300]


def test_an_expired_token_is_refused(server: AppwriteTestServer) -> None:
    storage = AppwriteStorage(**server.storage_options(bucket_id="default", url_expire=60))
    name = storage.save("timed/b.txt", ContentFile(b"soon gone"))
    link = storage.url(name)
    assert requests.get(link, timeout=30).status_code == 200
    server.advance_time(61)
    refused = requests.get(link, timeout=30)
    assert refused.status_code == 401
    assert refused.json()["type"] == "user_unauthorized"


def test_a_token_for_another_file_is_refused(
    storage: AppwriteStorage, server: AppwriteTestServer
) -> None:
    one = storage.save("shared/one.txt", ContentFile(b"one"))
    two = storage.save("shared/two.txt", ContentFile(b"two"))
    token_of_one = parse_qs(urlsplit(storage.url(one)).query)["token"][0]
    bare_two = storage.url(two).split("&token=")[0]
    forged = requests.get(f"{bare_two}&token={token_of_one}", timeout=30)
    assert forged.status_code == 401
    # A malformed token counts as none: a private file stays closed.
    assert requests.get(f"{bare_two}&token=not.a.jwt", timeout=30).status_code == 401


def test_a_file_deleted_and_saved_again_does_not_open_with_its_old_token(
    server: AppwriteTestServer,
) -> None:
    storage = AppwriteStorage(**server.storage_options(bucket_id="default"))
    name = storage.save("again/a.txt", ContentFile(b"first"))
    old_link = storage.url(name)
    storage.delete(name)
    assert storage.save("again/a.txt", ContentFile(b"second")) == name
    assert requests.get(old_link, timeout=30).status_code == 401
    # delete() dropped the cached token: the new file's link is a new token that opens it.
    new_link = storage.url(name)
    assert new_link != old_link
    assert requests.get(new_link, timeout=30).content == b"second"


def test_url_tokens_false_gives_plain_links_for_public_buckets(
    server: AppwriteTestServer,
) -> None:
    storage = AppwriteStorage(
        **server.storage_options(url_tokens=False, bucket_permissions=['read("any")'])
    )
    name = storage.save("public/p.txt", ContentFile(b"open to all"))
    server.clear_log()
    link = storage.url(name)
    assert "token=" not in link and server.request_count == 0
    assert requests.get(link, timeout=30).content == b"open to all"


def test_expire_argument_and_bad_values(
    storage: AppwriteStorage, server: AppwriteTestServer
) -> None:
    name = storage.save("args/a.txt", ContentFile(b"a"))
    storage.url(name, expire=120)
    (token,) = server.tokens()
    assert datetime.fromisoformat(token["expire"]) - server.now() <= timedelta(seconds=121)
    with pytest.raises(ValueError, match="expire"):
        storage.url(name, expire=0)
    with pytest.raises(ImproperlyConfigured, match="url_expire"):
        AppwriteStorage(**server.storage_options(url_expire="soon"))
    with pytest.raises(ImproperlyConfigured, match="url_tokens"):
        AppwriteStorage(**server.storage_options(url_tokens="yes"))


def test_a_missing_file_gets_a_plain_link(storage: AppwriteStorage) -> None:
    assert "token=" not in storage.url("nowhere/missing.txt")


def test_the_server_token_routes_follow_the_sdk(
    server: AppwriteTestServer, storage: AppwriteStorage
) -> None:
    storage.save("routes/r.txt", ContentFile(b"routes"))
    tokens = Tokens(server.client())
    later = (server.now() + timedelta(hours=1)).isoformat()
    made = tokens.create_file_token("routes", "r.txt", expire=later)
    assert made.resourceid == "routes:r.txt" and made.resourcetype == "files"
    assert tokens.list("routes", "r.txt").total == 1
    assert tokens.get(made.id).secret == made.secret
    view = f"{server.endpoint}/storage/buckets/routes/files/r.txt/view"
    query = {"project": server.project_id, "token": made.secret}
    assert requests.get(view, params=query, timeout=30).content == b"routes"
    tokens.delete(made.id)
    assert requests.get(view, params=query, timeout=30).status_code == 401
    with pytest.raises(AppwriteException) as past:
        tokens.create_file_token("routes", "r.txt", expire="2001-01-01T00:00:00.000+00:00")
    assert past.value.code == 400
    with pytest.raises(AppwriteException) as missing:
        tokens.create_file_token("routes", "absent.txt")
    assert missing.value.type == "storage_file_not_found"
    # Guests may not make tokens.
    guest = Tokens(server.client(api_key=""))
    with pytest.raises(AppwriteException) as scope:
        guest.create_file_token("routes", "r.txt")
    assert scope.value.type == "general_unauthorized_scope"
