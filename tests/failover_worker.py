"""A process of the failover test's workload: saves and deletes, each outcome logged.

Run with ``multiprocessing`` (spawn): ``work(...)`` saves a few contents under fresh names
and deletes names it holds, until told to stop, and appends one JSON line per outcome to
its log: ``["saved", name, content]`` and ``["deleted", name, content]`` for acknowledged
calls, ``["save?", null, content]`` and ``["delete?", name, content]`` for calls whose
outcome is unknown (they may or may not have counted), ``["not run", ...]`` for calls the
index certainly did not run, ``["note", class, message]`` for a dedupstore error of
another kind (a claim that timed out), ``["error", class, message]`` for anything else.
"""

from __future__ import annotations

import json
import random
from typing import Any

CONTENTS = [f"failover content {number}".encode() * (number + 1) for number in range(6)]


def work(
    index_url: str,
    location: str,
    namespace: str,
    log_path: str,
    seed: int,
    successes: Any,
    attempts: Any,
    stop: Any,
    index_timeout: float = 2.0,
) -> None:
    """Save and delete until ``stop`` is set; count calls in ``attempts``, acknowledged
    ones in ``successes``."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(SECRET_KEY="failover")
        django.setup()
    from django.core.files.base import ContentFile

    from dedupstore import DedupStorage
    from dedupstore.exceptions import DedupStoreError, DeleteOutcomeUnknown, IndexUnavailable

    storage = DedupStorage(
        inner={
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": location},
        },
        index=index_url,
        namespace=namespace,
        reuse="content",
        claim_ttl=5.0,
        wait_timeout=20.0,
        index_timeout=index_timeout,
    )
    rng = random.Random(seed)
    held: list[tuple[str, int]] = []
    number = 0
    with open(log_path, "a", encoding="utf-8") as log:

        def record(*entry: Any) -> None:
            log.write(json.dumps(entry) + "\n")
            log.flush()

        while not stop.is_set():
            number += 1
            with attempts.get_lock():
                attempts.value += 1
            if held and rng.random() < 0.45:
                name, content = held.pop(rng.randrange(len(held)))
                try:
                    storage.delete(name)
                except DeleteOutcomeUnknown:
                    record("delete?", name, content)
                except IndexUnavailable as exc:
                    if "Nothing was deleted" in str(exc):
                        record("not run", name, content)
                        held.append((name, content))
                    else:
                        record("delete?", name, content)
                    stop.wait(0.02)  # let a failover finish rather than spin
                except DedupStoreError as exc:
                    record("delete?", name, content)
                    record("note", type(exc).__name__, str(exc)[:300])
                except Exception as exc:
                    record("delete?", name, content)
                    record("error", type(exc).__name__, str(exc)[:300])
                else:
                    record("deleted", name, content)
                    with successes.get_lock():
                        successes.value += 1
            else:
                content = rng.randrange(len(CONTENTS))
                try:
                    name = storage.save(f"w{seed}/{number}.bin", ContentFile(CONTENTS[content]))
                except IndexUnavailable as exc:
                    record("save?" if exc.sent else "not run", None, content)
                    stop.wait(0.02)
                except DedupStoreError as exc:  # a claim timed out, or was taken over
                    record("save?", None, content)
                    record("note", type(exc).__name__, str(exc)[:300])
                except Exception as exc:
                    record("save?", None, content)
                    record("error", type(exc).__name__, str(exc)[:300])
                else:
                    held.append((name, content))
                    record("saved", name, content)
                    with successes.get_lock():
                        successes.value += 1
