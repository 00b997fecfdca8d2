"""Replicas: remote pins on Pinning Service API services, against the project's test server.

The service is ``PinningServiceTestServer`` over a second isolated embedded node on
loopback: "pinned" means its node fetched the bytes from ours and pinned them. Waits
are polls with long deadlines, or the test server's ``hold`` (requests stay ``queued``).
"""

from __future__ import annotations

import io
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from io import StringIO
from typing import Any

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.management import call_command

from dedupstore import DedupStorage
from dedupstore.backends.ipfs import InterPlanetaryFileSystemStorage, IPFSStorage
from dedupstore.backends.ipfs.cid import parse_cid
from dedupstore.backends.ipfs.embedded import EmbeddedNode, wait_for
from dedupstore.backends.ipfs.importer import import_file
from dedupstore.backends.ipfs.pinning import ReplicationError
from dedupstore.backends.ipfs.pins import pin_reports
from dedupstore.backends.ipfs.unixfs import Blockstore, UnixFSReader
from dedupstore.testing.pinning_service import SPEC_PATH, PinningServiceTestServer

TOKEN = f"psa-secret-{uuid.uuid4().hex}"
LONG = 120.0


@pytest.fixture
def service(make_node: Callable[[], EmbeddedNode]) -> Iterator[PinningServiceTestServer]:
    with PinningServiceTestServer(make_node(), token=TOKEN) as server:
        yield server


@pytest.fixture
def publisher(make_node: Callable[[], EmbeddedNode]) -> EmbeddedNode:
    return make_node()


def replicated(
    publisher: EmbeddedNode, service: PinningServiceTestServer, **options: Any
) -> IPFSStorage:
    return IPFSStorage(
        embedded_repo=str(publisher.repo),
        pinning_services=[{"endpoint": service.endpoint, "token": TOKEN}],
        timeout=LONG,
        **options,
    )


def remote_statuses(service: PinningServiceTestServer, cid: str) -> list[str]:
    response = requests.get(
        f"{service.endpoint}/pins",
        params={"cid": cid, "status": "queued,pinning,pinned,failed"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=60,
    )
    response.raise_for_status()
    return [result["status"] for result in response.json()["results"]]


def bytes_on(node: EmbeddedNode, cid: str) -> bytes:
    with UnixFSReader(Blockstore(node.repo), parse_cid(cid)) as reader:
        return reader.read()


def test_replicas_1_returns_once_the_other_node_holds_and_pins_the_bytes(
    publisher: EmbeddedNode, service: PinningServiceTestServer
) -> None:
    storage = replicated(publisher, service, replicas=1)
    payload = os.urandom(700_000)
    cid = storage.save("photo.jpg", ContentFile(payload))
    assert remote_statuses(service, cid) == ["pinned"]
    assert cid in service.node.pins()
    assert bytes_on(service.node, cid) == payload


def test_replicas_0_returns_while_the_remote_pin_is_queued_and_it_is_pinned_later(
    publisher: EmbeddedNode, service: PinningServiceTestServer
) -> None:
    storage = replicated(publisher, service)  # replicas=0: the default
    service.hold = True
    payload = os.urandom(50_000)
    cid = storage.save("a.bin", ContentFile(payload))
    assert storage.exists(cid)
    assert wait_for(lambda: remote_statuses(service, cid) == ["queued"], timeout=LONG)
    service.hold = False
    assert wait_for(lambda: remote_statuses(service, cid) == ["pinned"], timeout=LONG)
    assert bytes_on(service.node, cid) == payload


def test_delete_removes_the_remote_pins_too(
    publisher: EmbeddedNode, service: PinningServiceTestServer
) -> None:
    storage = replicated(publisher, service, replicas=1)
    cid = storage.save("d.bin", ContentFile(os.urandom(10_000)))
    assert cid in service.node.pins()
    storage.delete(cid)
    assert remote_statuses(service, cid) == []
    assert cid not in service.node.pins()
    assert not storage.exists(cid)


def test_through_dedupstorage_only_the_last_reference_removes_the_remote_pin(
    publisher: EmbeddedNode, service: PinningServiceTestServer, redis_url: str
) -> None:
    options = {
        "embedded_repo": str(publisher.repo),
        "pinning_services": [{"endpoint": service.endpoint, "token": TOKEN}],
        "replicas": 1,
        "timeout": LONG,
    }
    storage = DedupStorage(
        inner={"BACKEND": "dedupstore.backends.ipfs.IPFSStorage", "OPTIONS": options},
        index=redis_url,
        namespace=f"test-{uuid.uuid4().hex}",
        db_guard=False,
    )
    payload = os.urandom(20_000)
    name = storage.save("one.bin", ContentFile(payload))
    assert storage.save("two.bin", ContentFile(payload)) == name
    storage.delete(name)
    assert remote_statuses(service, name) == ["pinned"]
    storage.delete(name)
    assert remote_statuses(service, name) == []


def test_a_service_that_is_down_never_loses_the_local_pin_nor_blocks_reads(
    publisher: EmbeddedNode, service: PinningServiceTestServer
) -> None:
    service.down = True
    payload = os.urandom(30_000)
    asynchronous = replicated(publisher, service)
    cid = asynchronous.save("x.bin", ContentFile(payload))
    assert asynchronous.exists(cid)
    with asynchronous.open(cid) as handle:
        assert handle.read() == payload
    synchronous = replicated(publisher, service, replicas=1)
    other = os.urandom(30_000)
    with pytest.raises(ReplicationError, match="0 of the required 1"):
        synchronous.save("y.bin", ContentFile(other))
    # The local pin stays (an orphan at worst): the bytes are still here.
    assert other == bytes_on(publisher, str(parse_cid(asynchronous.save("z", ContentFile(other)))))
    synchronous.delete(cid)  # the remote removal fails, logged; the local unpin is done
    assert not synchronous.exists(cid)


def test_the_token_never_appears_in_messages_logs_repr_or_deconstruct(
    publisher: EmbeddedNode, service: PinningServiceTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = IPFSStorage(
        embedded_repo=str(publisher.repo),
        pinning_services=[{"endpoint": service.endpoint, "token": TOKEN + "-wrong"}],
        replicas=1,
        timeout=LONG,
    )
    with pytest.raises(ReplicationError) as raised:
        wrong.save("t.bin", ContentFile(b"token test"))
    storage = replicated(publisher, service, replicas=1)
    dropin = InterPlanetaryFileSystemStorage(
        embedded_repo=str(publisher.repo),
        pinning_services=[{"endpoint": service.endpoint, "token": TOKEN}],
        index="locmem://",
    )
    texts = [
        str(raised.value),
        caplog.text,
        repr(storage),
        repr(storage.pinning_services),
        repr(storage.deconstruct()),
        repr(dropin.deconstruct()),
    ]
    assert "401" in caplog.text  # the refusal was logged...
    for text in texts:
        assert TOKEN not in text  # ...without the token


def test_pins_report_where_each_cid_is_pinned_and_repair_requests_missing_ones(
    publisher: EmbeddedNode, service: PinningServiceTestServer
) -> None:
    storage = replicated(publisher, service, replicas=1)
    kept = storage.save("k.bin", ContentFile(os.urandom(5000)))
    service.down = True
    payload = os.urandom(5000)
    with pytest.raises(ReplicationError):
        storage.save("l.bin", ContentFile(payload))  # pinned locally, never remotely
    service.down = False
    lost = str(import_file(io.BytesIO(payload), lambda cid, block: None).cid)
    reports = {report.cid: report for report in pin_reports(storage)}
    assert reports[kept].remote == {service.endpoint: "pinned"}
    assert reports[lost].remote == {service.endpoint: "missing"}
    repaired = {report.cid: report for report in pin_reports(storage, repair=True)}
    assert repaired[lost].repaired == [service.endpoint]
    assert wait_for(lambda: remote_statuses(service, lost) == ["pinned"], timeout=LONG)


def test_the_pins_command_prints_the_statuses_without_the_token(
    publisher: EmbeddedNode, service: PinningServiceTestServer, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.STORAGES = {
        **settings.STORAGES,
        "replicated": {
            "BACKEND": "dedupstore.backends.ipfs.IPFSStorage",
            "OPTIONS": {
                "embedded_repo": str(publisher.repo),
                "pinning_services": [{"endpoint": service.endpoint, "token": TOKEN}],
                "replicas": 1,
                "timeout": LONG,
            },
        },
    }
    from django.core.files.storage import storages

    cid = storages["replicated"].save("c.bin", ContentFile(os.urandom(3000)))
    out = StringIO()
    call_command("dedupstore_pins", "replicated", stdout=out)
    assert f"{cid}  local: pinned; {service.endpoint}: pinned" in out.getvalue()
    assert TOKEN not in out.getvalue()
    out = StringIO()
    call_command("dedupstore", "pins", "replicated", stdout=out)
    assert f"{cid}  local: pinned; {service.endpoint}: pinned" in out.getvalue()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"replicas": 2}, "replicas=2 needs at least as many pinning_services"),
        ({"replicas": -1}, "replicas"),
        ({"pinning_services": {"endpoint": "http://x"}}, "must be a list"),
        ({"pinning_services": [{"endpoint": "ftp://x", "token": "t"}]}, "http"),
        ({"pinning_services": [{"endpoint": "http://127.0.0.1:1"}]}, "token"),
    ],
)
def test_bad_replica_options_are_improperly_configured(
    options: dict[str, Any], message: str
) -> None:
    options.setdefault("pinning_services", [{"endpoint": "http://127.0.0.1:1", "token": "t"}])
    with pytest.raises(ImproperlyConfigured, match=message):
        IPFSStorage(embedded_repo="/nonexistent", **options)


def test_the_test_server_follows_the_specification(service: PinningServiceTestServer) -> None:
    assert SPEC_PATH.read_text().count('version: "1.0.0"') == 1
    url = f"{service.endpoint}/pins"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    refused = requests.get(url, timeout=60)
    assert refused.status_code == 401
    assert refused.json()["error"]["reason"] == "UNAUTHORIZED"
    service.hold = True
    queued = requests.post(
        url,
        json={"cid": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"},
        headers=auth,
        timeout=60,
    )
    assert queued.status_code == 202
    status = queued.json()
    assert {"requestid", "status", "created", "pin", "delegates"} <= set(status)
    assert status["status"] == "queued" and status["delegates"]
    # Without filters only pinned objects are listed.
    assert requests.get(url, headers=auth, timeout=60).json() == {"count": 0, "results": []}
    one = requests.get(f"{url}/{status['requestid']}", headers=auth, timeout=60)
    assert one.status_code == 200 and one.json()["requestid"] == status["requestid"]
    bad = requests.post(url, json={"cid": "not-a-cid"}, headers=auth, timeout=60)
    assert bad.status_code == 400 and bad.json()["error"]["reason"] == "BAD_REQUEST"
    gone = requests.delete(f"{url}/{status['requestid']}", headers=auth, timeout=60)
    assert gone.status_code == 202
    missing = requests.get(f"{url}/{status['requestid']}", headers=auth, timeout=60)
    assert missing.status_code == 404 and missing.json()["error"]["reason"] == "NOT_FOUND"
