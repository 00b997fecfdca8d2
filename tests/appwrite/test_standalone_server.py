"""``python -m dedupstore.testing.appwrite`` runs the test server until it is stopped."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

from appwrite.client import Client
from appwrite.services.storage import Storage as SDKStorage

DEADLINE = 120.0  # seconds; a busy machine starts Python slowly


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def read_settings(process: subprocess.Popen[str]) -> dict[str, str]:
    """Read the printed settings lines until "Press Ctrl-C", within the deadline."""
    found: dict[str, str] = {}
    started = time.monotonic()
    assert process.stdout is not None
    for line in process.stdout:
        match = re.match(r"^(APPWRITE_\w+) = '(.*)'$", line.strip())
        if match:
            found[match.group(1)] = match.group(2)
        if line.startswith("Press Ctrl-C") or time.monotonic() - started > DEADLINE:
            break
    return found


def test_the_standalone_server_prints_its_settings_serves_the_sdk_and_stops_on_sigterm() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dedupstore.testing.appwrite", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        printed = read_settings(process)
        assert printed["APPWRITE_API_ENDPOINT"] == f"http://127.0.0.1:{port}/v1"
        client = Client()
        client.set_endpoint(printed["APPWRITE_API_ENDPOINT"])
        client.set_project(printed["APPWRITE_PROJECT_ID"])
        client.set_key(printed["APPWRITE_API_KEY"])
        sdk = SDKStorage(client)
        sdk.create_bucket("standalone", "Standalone")
        assert [bucket.id for bucket in sdk.list_buckets().buckets] == ["standalone"]
    finally:
        os.kill(process.pid, signal.SIGTERM)
        remaining_out, errors = process.communicate(timeout=DEADLINE)
    assert process.returncode == 0, errors
    assert "stopped" in remaining_out


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "dedupstore.testing.appwrite", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
