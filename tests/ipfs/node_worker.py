"""One process of ``test_one_node_every_process.py``: a storage over a shared embedded repo.

Run as ``python -m tests.ipfs.node_worker REPO REDIS_URL NAMESPACE``. It reads one JSON
command per line on stdin and answers one JSON line on stdout:

``{"op": "save", "name": ..., "data": <hex>}`` -> ``{"name": <stored name>}``;
``{"op": "read", "name": ...}`` -> ``{"data": <hex>}``; ``{"op": "delete", "name": ...}``;
``{"op": "exists"|"references", "name": ...}``; ``{"op": "role"}`` -> owner or client.
An exception answers ``{"error": "<type>: <message>"}``. End of input: a clean exit.
"""

from __future__ import annotations

import json
import sys

import django
from django.conf import settings


def main() -> None:
    repo, redis_url, namespace = sys.argv[1:4]
    settings.configure(
        INSTALLED_APPS=["dedupstore"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
        SECRET_KEY="dedupstore-tests-not-a-secret",
    )
    django.setup()
    from django.core.files.base import ContentFile

    from dedupstore import DedupStorage

    storage = DedupStorage(
        inner={
            "BACKEND": "dedupstore.backends.ipfs.IPFSStorage",
            "OPTIONS": {"embedded_repo": repo},
        },
        index=redis_url,
        namespace=namespace,
        db_guard=False,  # no database rows here: the index alone counts
    )
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        try:
            if op == "save":
                reply: dict[str, object] = {
                    "name": storage.save(
                        command["name"], ContentFile(bytes.fromhex(command["data"]))
                    )
                }
            elif op == "read":
                with storage.open(command["name"]) as handle:
                    reply = {"data": handle.read().hex()}
            elif op == "delete":
                storage.delete(command["name"])
                reply = {"done": True}
            elif op == "exists":
                reply = {"exists": storage.exists(command["name"])}
            elif op == "references":
                reply = {"references": storage.references(command["name"])}
            elif op == "role":
                shared = storage.inner.transport.shared
                shared.client()  # attach now if not yet
                reply = {"role": "owner" if shared.owner else "client"}
            else:
                reply = {"error": f"unknown op {op!r}"}
        except Exception as exc:  # reported to the test, which decides
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
