"""Run Django's own storage tests against ``DedupStorage``, once per reuse mode.

``python -m tests.django_suite.run`` takes ``tests/file_storage`` and ``tests/file_uploads``
from the source distribution of the installed Django (downloaded once with pip into the
git-ignored ``.cache/django-suite``), runs them with Django's own ``tests/runtests.py``
and the settings in ``settings.py`` (the storage under test is the only change), and
compares every outcome with ``expected.toml``. It exits non-zero when a test outside that
list fails, when a listed test passes (the list must stay honest), or when a run executed
no test.

Only the download reaches the network: the tests then run in a private network namespace
with loopback only (``scripts/loopback-only``; this script runs itself again inside it).
With ``--redis`` the index is a private redis-server started in there, instead of
``locmem://``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from collections import Counter
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "django-suite"
EXPECTED = Path(__file__).with_name("expected.toml")
MODES = ("content", "name", "never")
#: The baseline: Django's own FileSystemStorage, nothing substituted.
PLAIN = "plain"
#: Django's test labels run here, and the directories of its tests they need.
LABELS = ("file_storage.tests", "file_storage.test_generate_filename", "file_uploads")
NEEDED = ("runtests.py", "urls.py", "file_storage", "file_uploads")
#: The whole run is killed after this long (it takes well under a minute per mode).
RUN_TIMEOUT = 600
#: Set in the environment once this script runs inside the loopback-only namespace.
CONFINED = "DEDUP_SUITE_CONFINED"


def django_tests() -> Path:
    """Return the ``tests`` directory of the installed Django's sdist, fetching it once."""
    version = django.get_version()
    tests = CACHE / f"django-{version}" / "tests"
    if all((tests / part).exists() for part in NEEDED):
        return tests
    CACHE.mkdir(parents=True, exist_ok=True)
    archive = CACHE / f"django-{version}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
                *("--no-binary", ":all:", f"django=={version}", "-d", str(CACHE)),
            ],
            check=True,
        )
    prefix = f"django-{version}/tests/"
    wanted = tuple(prefix + part for part in NEEDED)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(wanted)]
        if not members:
            raise SystemExit(f"{archive} holds none of {', '.join(NEEDED)}")
        tar.extractall(CACHE, members=members, filter="data")
    return tests


def run_mode(tests: Path, mode: str, index: str, verbosity: int) -> dict[str, str]:
    """Run the labels with ``reuse=mode``; return ``{test id: outcome}``."""
    with tempfile.TemporaryDirectory(prefix="dedup-django-suite-") as scratch:
        results = Path(scratch) / "results.json"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "DEDUP_SUITE_REUSE": mode,
            "DEDUP_SUITE_INDEX": index,
            "DEDUP_SUITE_RESULTS": str(results),
        }
        if mode == PLAIN:
            env["DEDUP_SUITE_PLAIN"] = "1"
        command = [sys.executable, "runtests.py"]
        command += ["--settings=tests.django_suite.settings", "--parallel=1"]
        command += [f"--verbosity={verbosity}", *LABELS]
        log = CACHE / f"last-run-{mode}.log"
        with log.open("w", encoding="utf-8") as output:
            subprocess.run(
                command,
                cwd=tests,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=RUN_TIMEOUT,
                check=False,
            )
        if not results.exists():
            raise SystemExit(f"reuse={mode}: Django's runner wrote no results; see {log}")
        return json.loads(results.read_text(encoding="utf-8"))


#: The kinds of expected difference ``expected.toml`` may list.
KINDS = ("difference", "harness", "environment", "pending")


@dataclasses.dataclass(frozen=True)
class Difference:
    """One entry of ``expected.toml``: tests that fail on purpose, and why."""

    tests: tuple[str, ...]
    modes: tuple[str, ...]
    kind: str
    reason: str

    def covers(self, mode: str, test_id: str) -> bool:
        return mode in self.modes and any(fnmatch.fnmatchcase(test_id, p) for p in self.tests)


def load_expected() -> list[Difference]:
    """Return the entries of ``expected.toml`` that apply here, each checked for a reason."""
    differences = []
    for entry in tomllib.loads(EXPECTED.read_text(encoding="utf-8")).get("difference", []):
        tests, reason, kind = entry.get("tests"), entry.get("reason"), entry.get("kind")
        modes = tuple(entry.get("modes", MODES))
        if not tests or not reason or kind not in KINDS or not set(modes) <= set(MODES):
            raise SystemExit(f"{EXPECTED.name}: each entry needs tests, a kind, a reason: {entry}")
        if entry.get("only_as_root") and os.geteuid() != 0:
            continue
        differences.append(Difference(tuple(tests), modes, kind, reason))
    return differences


def compare(mode: str, outcomes: dict[str, str], expected: list[Difference]) -> list[str]:
    """Return the problems of one mode's outcomes against the expected differences."""
    problems = []
    for test_id, outcome in sorted(outcomes.items()):
        listed = any(difference.covers(mode, test_id) for difference in expected)
        if outcome in ("fail", "error") and not listed:
            problems.append(f"reuse={mode}: {test_id} {outcome}s, not an expected difference")
        elif outcome == "pass" and listed:
            problems.append(f"reuse={mode}: {test_id} passes: take it out of {EXPECTED.name}")
    for difference in expected:
        for pattern in difference.tests:
            if mode in difference.modes and not fnmatch.filter(outcomes, pattern):
                problems.append(f"reuse={mode}: no test matches {pattern!r} in {EXPECTED.name}")
    return problems


def summary(mode: str, outcomes: dict[str, str]) -> str:
    """Describe one mode's counts, per Django test module."""
    lines = []
    for label in LABELS:
        counts = Counter(o for t, o in outcomes.items() if t.startswith(label + "."))
        ran = sum(counts.values()) - counts["skip"]
        lines.append(
            f"  {label}: {counts['pass']} of {ran} pass"
            + (f" ({counts['skip']} skipped)" if counts["skip"] else "")
        )
    return ("FileSystemStorage" if mode == PLAIN else f"reuse={mode}") + ":\n" + "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mode",
        action="append",
        choices=(*MODES, PLAIN),
        help="a reuse mode, or 'plain' (Django's FileSystemStorage, for a baseline); "
        "default: the three reuse modes",
    )
    parser.add_argument(
        "--redis", action="store_true", help="index on a private redis-server, not locmem://"
    )
    parser.add_argument("--verbosity", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write every outcome to this file")
    parser.add_argument(
        "--no-compare", action="store_true", help="report counts only (to measure a baseline)"
    )
    args = parser.parse_args()
    tests = django_tests()
    if not os.environ.get(CONFINED):
        # The sdist is here: run again where nothing reaches beyond loopback.
        loopback_only = str(ROOT / "scripts" / "loopback-only")
        command = [loopback_only, sys.executable, "-m", "tests.django_suite.run", *sys.argv[1:]]
        env = {**os.environ, CONFINED: "1"}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    with contextlib.ExitStack() as stack:
        index = "locmem://django-suite"
        if args.redis:
            from dedupstore.testing.redis import RedisServer

            index = stack.enter_context(RedisServer()).url
        return run_all(args, tests, index)


def run_all(args: argparse.Namespace, tests: Path, index: str) -> int:
    """Run every mode asked for, compare, report; return the exit status."""
    expected = load_expected()
    problems: list[str] = []
    everything = {}
    for mode in args.mode or MODES:
        outcomes = run_mode(tests, mode, index, args.verbosity)
        everything[mode] = outcomes
        print(summary(mode, outcomes), flush=True)
        if not any(outcome == "pass" for outcome in outcomes.values()):
            problems.append(f"reuse={mode}: no test passed (did any run?)")
        if not args.no_compare and mode != PLAIN:
            problems += compare(mode, outcomes, expected)
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1, sort_keys=True), encoding="utf-8")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"Django's output (tracebacks) is in {CACHE}/last-run-<mode>.log", file=sys.stderr)
        print(f"Django storage suite: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("Django storage suite: every outcome is as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
