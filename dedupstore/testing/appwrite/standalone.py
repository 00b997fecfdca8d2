"""``python -m dedupstore.testing.appwrite``: the test server in the foreground."""

from __future__ import annotations

import threading

from .server import AppwriteTestServer


def main(argv: list[str] | None = None) -> int:
    """Run the test server in the foreground until Ctrl-C or SIGTERM.

    For a development server or a front end: it prints the settings that point a Django
    project at it. State lives in memory and a temporary directory, gone when it stops.
    """
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m dedupstore.testing.appwrite",
        description=(
            "Run dedupstore's own Appwrite Storage test server on 127.0.0.1 (an emulation "
            "for tests and development, not Appwrite)."
        ),
    )
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--project-id", default="dedupstore-test")
    parser.add_argument("--api-key", default=None, help="default: a random key, printed")
    args = parser.parse_args(argv)

    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server = AppwriteTestServer(
            project_id=args.project_id, api_key=args.api_key, port=args.port
        ).start()
    except OSError as exc:
        print(f"cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        print("dedupstore's Appwrite test server (an emulation, not Appwrite) is running:")
        print(f"APPWRITE_API_ENDPOINT = {server.endpoint!r}")
        print(f"APPWRITE_PROJECT_ID = {server.project_id!r}")
        print(f"APPWRITE_API_KEY = {server.api_key!r}")
        print("Press Ctrl-C to stop.", flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
    print("stopped", flush=True)
    return 0
