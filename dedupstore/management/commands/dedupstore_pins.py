"""``manage.py dedupstore_pins [ALIAS] [--repair]``: where each CID is pinned.

For each root pinned on the storage's IPFS node, print its status on each pinning
service (``pinning_services``); ``--repair`` requests the missing and failed remote pins
again. The logic is :func:`dedupstore.backends.ipfs.pins.pin_reports`, which the
``manage.py dedupstore pins`` subcommand runs too. Tokens are never printed.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import storages
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Show where each CID of an IPFS storage is pinned; --repair requests missing pins."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("alias", nargs="?", default="default", help="a STORAGES alias")
        parser.add_argument(
            "--repair", action="store_true", help="request the missing remote pins again"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from dedupstore.backends.ipfs.pins import pin_reports

        try:
            storage = storages[options["alias"]]
            reports = list(pin_reports(storage, repair=options["repair"]))
        except (ImproperlyConfigured, KeyError) as exc:
            raise CommandError(f"{options['alias']}: {exc}") from exc
        for report in reports:
            self.stdout.write(report.line())
        missing = sum(1 for report in reports if set(report.remote.values()) - {"pinned"})
        self.stdout.write(f"{len(reports)} CIDs; {missing} not pinned on every service")
