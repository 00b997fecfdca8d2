"""Names are validated before any node call: CIDs, paths, traversal attempts."""

from __future__ import annotations

import pytest
from django.core.exceptions import SuspiciousFileOperation

from dedupstore.backends.ipfs import InvalidCIDError
from dedupstore.backends.ipfs.cid import DAG_PB, RAW, parse_cid, parse_name

V0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
V1_OF_V0 = "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"
RAW_V1 = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def test_cidv0_and_its_v1_form_share_the_multihash() -> None:
    v0, v1 = parse_cid(V0), parse_cid(V1_OF_V0)
    assert (v0.version, v0.codec) == (0, DAG_PB)
    assert (v1.version, v1.codec) == (1, DAG_PB)
    assert v0.multihash == v1.multihash
    assert v0.base32() == V1_OF_V0
    assert str(v0) == V0 and str(v1) == V1_OF_V0


def test_raw_cidv1_and_other_multibases() -> None:
    cid = parse_cid(RAW_V1)
    assert cid.codec == RAW
    assert parse_cid(RAW_V1.upper()[0] + RAW_V1.upper()[1:]).multihash == cid.multihash
    hex_form = "f" + cid.to_bytes().hex()
    assert parse_cid(hex_form) == cid


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "hello",
        "Qmfoo",
        V0[:-1] + "0",  # '0' is not base58
        V0[:-2],
        "bafy",
        "b" + "a" * 60,
        V1_OF_V0 + "a",
        "z1111",
        "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",  # dag-cbor
        "x" * 500,
        "Qm" + "é" * 44,
    ],
)
def test_malformed_cids_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidCIDError):
        parse_cid(bad)
    with pytest.raises(InvalidCIDError):
        parse_name(bad)


@pytest.mark.parametrize(
    "bad", ["../etc/passwd", "/etc/passwd", f"{V0}/../x", f"{V0}/./x", f"{V0}\\x", f"{V0}/a\0"]
)
def test_traversal_like_names_are_suspicious(bad: str) -> None:
    with pytest.raises(SuspiciousFileOperation):
        parse_name(bad)


def test_paths_below_a_cid() -> None:
    path = parse_name(f"{V0}/report 1.pdf")
    assert path.root == parse_cid(V0)
    assert path.segments == ("report 1.pdf",)
    assert path.filename == "report 1.pdf"
    assert path.name == f"{V0}/report 1.pdf"
    with pytest.raises(InvalidCIDError):
        parse_name(f"{V0}//x")
    with pytest.raises(InvalidCIDError):
        parse_name(f"{V0}/" + "a" * 256)
