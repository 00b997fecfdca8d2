"""``manage.py dedupstore <command>``: stats, verify, reconcile, gc, adopt, compact, and more.

Also ``namespace``, ``migrate-index`` and ``pins`` (the ``dedupstore_*`` commands).

Every command takes ``--storage ALIAS`` (default: every ``DedupStorage`` in ``STORAGES``
and on model fields), ``--json`` and ``--no-progress``, and exits 0 when all is well, 1
when it found problems (or refused to act), 2 on a usage error. The logic lives in
``dedupstore.ops``; this module parses, picks the storages and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.files.storage import storages
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dedupstore.exceptions import IndexUnavailable
from dedupstore.ops.base import Report
from dedupstore.storage import DedupStorage
from dedupstore.storages_in_use import storages_in_use

#: Exit statuses.
PROBLEMS_FOUND = 1
USAGE_ERROR = 2


def _seconds(value: str) -> float:
    """Parse a duration: seconds, or a number with s, m, h or d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if value and value[-1] in units:
            seconds = float(value[:-1]) * units[value[-1]]
        else:
            seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {value!r} (e.g. 3600, 90m, 1h)"
        ) from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"a duration cannot be negative: {value!r}")
    return seconds


def _share(value: str) -> float:
    """Parse a share: 0.1 or 10%."""
    try:
        share = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a share: {value!r} (e.g. 0.1 or 10%)") from None
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"a share is between 0 and 1 (0% and 100%): {value!r}")
    return share


def _jobs(value: str) -> int:
    try:
        jobs = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of jobs: {value!r}") from None
    if jobs < 1:
        raise argparse.ArgumentTypeError("--jobs must be at least 1")
    return jobs


class Command(BaseCommand):
    help = (
        "Inspect and repair DedupStorage indexes against the database: stats, verify, "
        "reconcile, gc, adopt, compact (and namespace, migrate-index, pins)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

        def command(name: str, help: str, *, grace: bool = False) -> Any:
            sub = commands.add_parser(name, help=help, description=help)
            sub.add_argument(
                "--storage",
                action="append",
                dest="aliases",
                metavar="ALIAS",
                help="a STORAGES alias (repeatable; default: every DedupStorage in use)",
            )
            sub.add_argument("--json", action="store_true", help="print a JSON report on stdout")
            sub.add_argument(
                "--no-progress", action="store_true", help="no progress bar (shown on a terminal)"
            )
            if grace:
                sub.add_argument(
                    "--grace",
                    type=_seconds,
                    default=3600.0,
                    help="only records (and objects) unchanged this long are lowered or "
                    "removed (seconds, or 90m, 1h, 2d; default 1h)",
                )
            return sub

        stats = command("stats", "objects, references, bytes and dedup ratio (O(1))")
        stats.add_argument(
            "--top", type=int, default=10, help="most shared objects to list (one scan; 0: none)"
        )
        verify = command("verify", "compare the rows, the index and the inner storage (read-only)")
        verify.add_argument("--deep", action="store_true", help="re-hash every object too")
        verify.add_argument(
            "--no-orphans", action="store_true", help="do not list the inner storage"
        )
        reconcile = command(
            "reconcile", "set every count from the rows; rebuild a lost index", grace=True
        )
        reconcile.add_argument(
            "--force",
            action="store_true",
            help="lower counts even when the live set looks too small",
        )
        reconcile.add_argument(
            "--max-drop",
            type=_share,
            default=0.10,
            help="lower no count when the rows hold fewer references than the index counts by "
            "more than this share (default 10%%)",
        )
        gc = command("gc", "remove what nothing references (a dry run by default)", grace=True)
        gc.add_argument("--apply", action="store_true", help="delete (default: a dry run)")
        gc.add_argument(
            "--force", action="store_true", help="act even when the live set looks too small"
        )
        gc.add_argument(
            "--max-drop",
            type=_share,
            default=0.10,
            help="refuse when the rows hold fewer references than the index counts by more "
            "than this share (default 10%%)",
        )
        gc.add_argument("--no-orphans", action="store_true", help="do not list the inner storage")
        adopt = command("adopt", "bring existing files under the index (resumable)")
        adopt.add_argument(
            "--all", action="store_true", help="every object the inner storage lists, too"
        )
        adopt.add_argument(
            "--jobs",
            type=_jobs,
            default=None,
            help="objects hashed at once (default: one per core for a plain "
            "FileSystemStorage, 1 for any other storage)",
        )
        compact = command("compact", "point rows at one copy of each content (a dry run)")
        compact.add_argument("--apply", action="store_true", help="rewrite rows and delete")
        compact.add_argument(
            "--batch-size", type=int, default=500, help="rows rewritten per transaction"
        )
        namespace = commands.add_parser(
            "namespace", help="print each DedupStorage's namespace (dedupstore_namespace)"
        )
        namespace.add_argument("namespace_aliases", nargs="*", metavar="ALIAS")
        migrate = commands.add_parser(
            "migrate-index",
            help="move each index to the current key layout (dedupstore_migrate_index)",
        )
        migrate.add_argument("migrate_aliases", nargs="*", metavar="ALIAS")
        migrate.add_argument("--index", help="an index URL (with --namespace), not STORAGES")
        migrate.add_argument("--namespace", help="the namespace to migrate at --index")
        pins = commands.add_parser(
            "pins", help="where each CID of an IPFS storage is pinned (dedupstore_pins)"
        )
        pins.add_argument("pins_alias", nargs="?", default="default", metavar="ALIAS")
        pins.add_argument(
            "--repair", action="store_true", help="request the missing remote pins again"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        command = options["command"]
        if command == "namespace":
            call_command(
                "dedupstore_namespace",
                *options["namespace_aliases"],
                stdout=self.stdout,
                stderr=self.stderr,
            )
            return
        if command == "migrate-index":
            extra = {key: options[key] for key in ("index", "namespace") if options[key]}
            call_command(
                "dedupstore_migrate_index",
                *options["migrate_aliases"],
                stdout=self.stdout,
                stderr=self.stderr,
                **extra,
            )
            return
        if command == "pins":
            call_command(
                "dedupstore_pins",
                options["pins_alias"],
                repair=options["repair"],
                stdout=self.stdout,
                stderr=self.stderr,
            )
            return
        run = self._runner(command, options)
        show_progress = not options["no_progress"] and sys.stderr.isatty()
        reports: list[Report] = []
        for where, storage in self._storages(options["aliases"]):
            try:
                report = run(storage, where, show_progress)
            except IndexUnavailable as exc:
                report = Report(command, where, storage.namespace, refused=True)
                report.notes.append(f"the index did not answer: {exc}")
            reports.append(report)
            if not options["json"]:
                self.stdout.write(report.as_text())
        ok = all(report.ok for report in reports)
        if options["json"]:
            document = {
                "command": command,
                "ok": ok,
                "storages": [report.as_json() for report in reports],
            }
            self.stdout.write(json.dumps(document, indent=2, default=str))
        if not ok:
            problems = sum(report.problems for report in reports)
            refused = sum(report.refused for report in reports)
            raise CommandError(
                f"dedupstore {command}: {problems} problem(s) found"
                + (f", {refused} storage(s) refused" if refused else ""),
                returncode=PROBLEMS_FOUND,
            )

    def _storages(self, aliases: list[str] | None) -> list[tuple[str, DedupStorage]]:
        if not aliases:
            found = list(storages_in_use())
            if not found:
                raise CommandError(
                    "no DedupStorage is configured (STORAGES or model fields)",
                    returncode=USAGE_ERROR,
                )
            return found
        chosen = []
        configured = getattr(settings, "STORAGES", {})
        for alias in aliases:
            if alias not in configured:
                raise CommandError(
                    f"--storage {alias!r} is not in settings.STORAGES "
                    f"(aliases: {', '.join(configured)})",
                    returncode=USAGE_ERROR,
                )
            storage = storages[alias]
            if not isinstance(storage, DedupStorage):
                raise CommandError(
                    f"--storage {alias!r} is a {type(storage).__name__}, not a DedupStorage",
                    returncode=USAGE_ERROR,
                )
            chosen.append((f"STORAGES[{alias!r}]", storage))
        return chosen

    def _runner(
        self, command: str, options: dict[str, Any]
    ) -> Callable[[DedupStorage, str, bool], Report]:
        from dedupstore.ops import adopt, compact, gc, reconcile, stats, verify

        if command == "stats":
            return lambda storage, where, _: stats.stats(storage, where=where, top=options["top"])
        if command == "verify":
            return lambda storage, where, bar: verify.verify(
                storage,
                where=where,
                deep=options["deep"],
                orphans=not options["no_orphans"],
                show_progress=bar,
            )
        if command == "reconcile":
            return lambda storage, where, bar: reconcile.reconcile(
                storage,
                where=where,
                grace=options["grace"],
                max_drop=options["max_drop"],
                force=options["force"],
                show_progress=bar,
            )
        if command == "gc":
            return lambda storage, where, bar: gc.gc(
                storage,
                where=where,
                apply=options["apply"],
                force=options["force"],
                grace=options["grace"],
                max_drop=options["max_drop"],
                orphans=not options["no_orphans"],
                show_progress=bar,
            )
        if command == "adopt":
            return lambda storage, where, bar: adopt.adopt(
                storage,
                where=where,
                everything=options["all"],
                jobs=options["jobs"],
                show_progress=bar,
            )
        if command == "compact":
            return lambda storage, where, bar: compact.compact(
                storage,
                where=where,
                apply=options["apply"],
                batch_size=options["batch_size"],
                show_progress=bar,
            )
        raise CommandError(f"unknown command {command!r}", returncode=USAGE_ERROR)
