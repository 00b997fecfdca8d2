"""A process that saves one content through ``DedupStorage`` over ``S3Storage``, on cue.

Run as ``python -m tests.s3_worker CONFIG_JSON``: it builds the storage and opens its index
and S3 connection, prints ``ready``, waits for a line on stdin (so every process starts its
save at once), saves, and prints the name ``save()`` returned.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(config: dict[str, str]) -> None:
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    import django
    from django.conf import settings

    settings.configure(SECRET_KEY="s3-worker", USE_TZ=True)
    django.setup()
    from django.core.files.base import ContentFile

    from dedupstore import DedupStorage

    storage = DedupStorage(
        inner={"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": config["options"]},
        index=config["index"],
        namespace=config["namespace"],
    )
    # Connect before the cue, so the saves race each other rather than their start-up.
    storage.index.lookup("warm-up")
    storage.inner.exists("warm-up")
    payload = Path(config["payload"]).read_bytes()
    print("ready", flush=True)
    sys.stdin.readline()
    print(storage.save(config["name"], ContentFile(payload)), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
