"""Measure what an uploader learns from deduplication, per reuse setting, side by side.

A victim stores a templated letter with a 4-digit PIN under ``tenants/alice/``. An
attacker, who knows the template, uploads every candidate letter under ``tenants/mallory/``
and watches the names returned (a name outside its own directory is someone else's file)
and the time each save takes. For each configuration this prints how many uploads and
seconds recovering the PIN took (or that it was not found), and the median latency of a
save of the right candidate against a save of a wrong one, both measured in this run.
Writes ``benchmarks/results/side_channel.json``. Run:
``python benchmarks/bench_side_channel.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

try:
    from _support import RESULTS, machine, setup_django
except ImportError:  # run as `python -m benchmarks.bench_side_channel`
    from benchmarks._support import RESULTS, machine, setup_django

TEMPLATE = (
    "Dear customer,\n\nyour new card is on its way. Its PIN is {pin}. Keep this letter in a "
    "safe place and do not share the PIN with anyone.\n\nYour bank\n"
)


def tenant_of(name: str) -> str:
    """The tenant of ``tenants/<tenant>/...`` names: the scope of a multi-tenant site."""
    parts = name.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tenants" else "shared"


#: (label, DedupStorage options, whether the attacker asks for the victim's very name)
CONFIGURATIONS: list[tuple[str, dict[str, Any], bool]] = [
    ("reuse=content, reuse_scope=any", {"reuse": "content", "reuse_scope": "any"}, False),
    ("reuse=content, reuse_scope=extension (default)", {"reuse": "content"}, False),
    (
        "reuse=content, reuse_scope=<tenant callable>",
        {"reuse": "content", "reuse_scope": f"{__name__}.tenant_of"},
        False,
    ),
    ("reuse=name, attacker names the victim's file", {"reuse": "name"}, True),
    ("reuse=never", {"reuse": "never"}, False),
]


def letter(pin: int) -> bytes:
    return TEMPLATE.format(pin=f"{pin:04d}").encode()


def attack(storage: Any, victim: str, pins: list[int], exact_name: bool) -> dict[str, Any]:
    """Upload candidates in order until a returned name gives the victim's file away."""
    from django.core.files.base import ContentFile

    started = time.perf_counter()
    for tried, pin in enumerate(pins, start=1):
        wanted = victim if exact_name else f"tenants/mallory/guess-{tried}.txt"
        stored = storage.save(wanted, ContentFile(letter(pin)))
        # A hit hands out the stored object's name: the victim's own, or (reuse="name")
        # exactly the name asked for where a miss would have picked a free one.
        if stored == victim:
            return {"found": True, "uploads": tried, "seconds": time.perf_counter() - started}
    return {"found": False, "uploads": len(pins), "seconds": time.perf_counter() - started}


def latencies(
    storage: Any, victim: str, right: int, wrong: list[int], exact_name: bool, repeat: int
) -> dict[str, float]:
    """Median seconds of a save of the right candidate and of a wrong one, interleaved."""
    from django.core.files.base import ContentFile

    right_times, wrong_times = [], []
    for round_number in range(repeat):
        for pin, times in ((right, right_times), (wrong[round_number % len(wrong)], wrong_times)):
            wanted = victim if exact_name else f"tenants/mallory/t-{uuid.uuid4().hex}.txt"
            started = time.perf_counter()
            stored = storage.save(wanted, ContentFile(letter(pin)))
            times.append(time.perf_counter() - started)
            storage.delete(stored)  # keep one reference per content: each round is alike
    return {
        "right_ms": statistics.median(right_times) * 1000,
        "wrong_ms": statistics.median(wrong_times) * 1000,
    }


def fresh(index: str, workdir: str, options: dict[str, Any], pin: int) -> tuple[Any, str]:
    """Return a new storage holding only the victim's letter, and the letter's name."""
    from django.core.files.base import ContentFile

    from dedupstore import DedupStorage

    storage = DedupStorage(
        inner={
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(Path(workdir) / uuid.uuid4().hex)},
        },
        index=index,
        namespace=f"bench-{uuid.uuid4().hex}",
        **options,
    )
    return storage, storage.save("tenants/alice/letter.txt", ContentFile(letter(pin)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 candidate PINs, not 10,000")
    args = parser.parse_args()
    setup_django(empty_storages=False)
    from dedupstore.testing.redis import RedisServer

    space = 1000 if args.quick else 10000
    repeat = 200 if args.quick else 1000
    rng = random.Random(20261201)
    secret_pin = rng.randrange(space)
    pins = list(range(space))
    rng.shuffle(pins)  # the attacker's order: the PIN sits at a random rank
    wrong = [pin for pin in pins[:50] if pin != secret_pin]
    rows = []
    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="dedupbench-") as tmp:
        for label, options, exact_name in CONFIGURATIONS:
            row: dict[str, Any] = {"configuration": label, **options}
            # Timing first, on a storage where no wrong candidate was ever uploaded (the
            # attack leaves its misses stored, and a second upload of one would be a hit).
            storage, victim = fresh(server.url, tmp, options, secret_pin)
            row["latency"] = latencies(storage, victim, secret_pin, wrong, exact_name, repeat)
            row["latency"]["right_over_wrong"] = (
                row["latency"]["right_ms"] / row["latency"]["wrong_ms"]
            )
            storage, victim = fresh(server.url, tmp, options, secret_pin)
            row["attack"] = attack(storage, victim, pins, exact_name)
            row["attack"]["ms_per_upload"] = (
                row["attack"]["seconds"] / row["attack"]["uploads"] * 1000
            )
            rows.append(row)
    results = {"machine": machine(), "quick": args.quick, "pin_space": space, "rows": rows}
    print(f"{'configuration':<48} {'PIN recovered':<26} {'right vs wrong guess':<28}")
    for row in rows:
        attack_result = row["attack"]
        outcome = (
            f"after {attack_result['uploads']} uploads, {attack_result['seconds']:.1f} s"
            if attack_result["found"]
            else f"no ({attack_result['uploads']} uploads)"
        )
        latency = row["latency"]
        timing = (
            f"{latency['right_ms']:.2f} vs {latency['wrong_ms']:.2f} ms "
            f"({latency['right_over_wrong']:.2f}x)"
        )
        print(f"{row['configuration']:<48} {outcome:<26} {timing:<28}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "side_channel.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {RESULTS / 'side_channel.json'}")


if __name__ == "__main__":
    main()
