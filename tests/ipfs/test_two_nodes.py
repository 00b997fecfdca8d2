"""Two isolated nodes connected on 127.0.0.1: content saved on one is fetched by CID on the other.

This is the promise of IPFS kept by the storage: other IPFS users reach the content by
its CID alone.
"""

from __future__ import annotations

import os

import pytest
from django.core.files.base import ContentFile

from dedupstore.backends.ipfs import ContentNotFoundError, IPFSStorage
from dedupstore.backends.ipfs.embedded import wait_for


def test_content_saved_on_one_node_is_fetched_by_cid_on_the_other(make_node) -> None:  # type: ignore[no-untyped-def]
    publisher, reader = make_node(), make_node()
    reader.connect(f"{publisher.multiaddrs()[0]}/p2p/{publisher.peer_id()}")
    assert wait_for(lambda: publisher.peer_id() in " ".join(reader.peers()), timeout=5)

    saved_on = IPFSStorage(embedded_repo=str(publisher.repo))
    fetched_on = IPFSStorage(embedded_repo=str(reader.repo), timeout=20)
    payload = os.urandom(700_000)
    cid = saved_on.save("shared/photo.jpg", ContentFile(payload))

    # Not local on the reader: exists/size answer from local data only.
    assert not fetched_on.exists(cid)
    with pytest.raises(FileNotFoundError):
        fetched_on.size(cid)
    with fetched_on.open(cid) as handle:
        assert handle.read() == payload
    # The fetched blocks are now cached (not pinned) on the reader.
    assert fetched_on.size(cid) == len(payload)
    assert not fetched_on.exists(cid)


def test_open_gives_up_after_the_timeout_when_no_peer_has_it(make_node) -> None:  # type: ignore[no-untyped-def]
    first, second = make_node(), make_node()
    second.connect(f"{first.multiaddrs()[0]}/p2p/{first.peer_id()}")
    storage = IPFSStorage(embedded_repo=str(second.repo), timeout=0.5)
    # A peer is connected, so the node searches; nobody has this CID.
    nobody = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    with pytest.raises(ContentNotFoundError, match=r"within 0\.5 s"):
        storage.open(nobody)
