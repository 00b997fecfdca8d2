"""``manage.py dedupstore_migrate_index``: move each DedupStorage's index to the current layout.

Stop every process that uses the index first (one of an older dedupstore would go on
writing keys in the old layout). Safe to run again, after an interruption or on an index
that is in the current layout already.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string

from dedupstore.index.migrate import migrate_index
from dedupstore.storage import DedupStorage


class Command(BaseCommand):
    help = (
        "Move the Redis index of each DedupStorage in STORAGES (or of --index/--namespace) "
        "to the current key layout (3: hash-tagged, records packed), keeping every count. "
        "Stop every process using it first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("aliases", nargs="*", help="STORAGES aliases (default: all)")
        parser.add_argument("--index", help="an index URL (with --namespace), not STORAGES")
        parser.add_argument("--namespace", help="the namespace to migrate at --index")

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["index"]) != bool(options["namespace"]):
            raise CommandError("--index and --namespace go together")
        targets: list[tuple[str, str, str]] = []
        if options["index"]:
            targets.append(("--index", options["index"], options["namespace"]))
        else:
            configured = getattr(settings, "STORAGES", {})
            for alias in options["aliases"] or list(configured):
                if alias not in configured:
                    raise CommandError(f"{alias!r} is not in settings.STORAGES")
                definition = configured[alias]
                try:
                    backend = import_string(definition.get("BACKEND", ""))
                except ImportError as exc:
                    raise CommandError(f"{alias}: cannot import its BACKEND: {exc}") from exc
                if not (isinstance(backend, type) and issubclass(backend, DedupStorage)):
                    continue
                storage = backend(**definition.get("OPTIONS", {}))
                if storage.index_url.startswith("locmem://"):
                    continue
                targets.append((alias, storage.index_url, storage.namespace))
        seen: set[tuple[str, str]] = set()
        for alias, url, namespace in targets:
            if (url, namespace) in seen:
                continue
            seen.add((url, namespace))
            report = migrate_index(url, namespace)
            self.stdout.write(
                f"{alias}: {namespace}: {report.moved} key(s) moved to the hash-tagged layout"
                + (f", {len(report.conflicts)} left (already there)" if report.conflicts else "")
                + f", {report.packed} record(s) and content map(s) packed (layout 3)"
            )
            for key in report.conflicts:
                self.stderr.write(f"  left in the old layout: {key!r}")
