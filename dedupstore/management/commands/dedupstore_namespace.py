"""``manage.py dedupstore_namespace``: print each DedupStorage's index namespace.

Beside the namespace in use it prints the default namespace dedupstore 0.1 derived for the
same storage, so a deployment can pin it (``OPTIONS {"namespace": ...}``) and keep the
reference counts it built before the default moved.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string

from dedupstore.namespace import legacy_namespace, storage_location
from dedupstore.storage import DedupStorage


class Command(BaseCommand):
    help = (
        "Print the index namespace of each DedupStorage in STORAGES, where its bytes live, "
        "and the default namespace dedupstore 0.1 used for it (to pin with 'namespace')."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("aliases", nargs="*", help="STORAGES aliases (default: all)")

    def handle(self, *args: Any, **options: Any) -> None:
        configured = getattr(settings, "STORAGES", {})
        aliases = options["aliases"] or list(configured)
        for alias in aliases:
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
            legacy = legacy_namespace(storage)
            self.stdout.write(f"{alias}:")
            self.stdout.write(f"  namespace: {storage.namespace}")
            self.stdout.write(f"  location:  {storage_location(storage.inner)}")
            if legacy is None:
                self.stdout.write(
                    "  0.1 default: not reproducible (its inner OPTIONS held objects whose "
                    "repr differs in every process)"
                )
            else:
                self.stdout.write(f"  0.1 default: {legacy}")
                if legacy != storage.namespace:
                    self.stdout.write(
                        f'  to keep the 0.1 reference counts: "OPTIONS": {{..., '
                        f'"namespace": "{legacy}"}}'
                    )
