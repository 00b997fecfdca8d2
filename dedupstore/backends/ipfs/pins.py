"""Where each CID is pinned, and the repair of missing remote pins.

The logic of ``manage.py dedupstore pins`` (and of the stand-alone ``dedupstore_pins``
command): for each root pinned on the storage's node, the status of its remote pin on
each configured pinning service; with ``repair``, a pin is requested again on every
service that has none (or only a failed one), and followed like a save's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from .storage import IPFSStorage

__all__ = ["PinReport", "find_ipfs_storage", "pin_reports"]

#: Remote statuses that a repair requests again.
_REPAIRABLE = ("missing", "failed")


@dataclass
class PinReport:
    """One CID: ``{endpoint: status}`` (``pinned``, ``pinning``, ``queued``, ``failed``,
    ``missing``, ``unreachable``), and the endpoints a repair asked to pin it."""

    cid: str
    remote: dict[str, str]
    repaired: list[str] = field(default_factory=list)

    def line(self) -> str:
        where = ", ".join(f"{endpoint}: {status}" for endpoint, status in self.remote.items())
        text = f"{self.cid}  local: pinned" + (f"; {where}" if where else "")
        if self.repaired:
            text += f"  (repair requested on {', '.join(self.repaired)})"
        return text


def find_ipfs_storage(storage: Any) -> IPFSStorage:
    """Return the ``IPFSStorage`` of ``storage`` (itself, or a DedupStorage's inner one)."""
    candidate = storage
    for _ in range(4):
        if isinstance(candidate, IPFSStorage):
            return candidate
        candidate = getattr(candidate, "inner", None)
    raise ImproperlyConfigured(f"{type(storage).__name__} is not an IPFS storage")


def pin_reports(storage: Any, *, repair: bool = False) -> Iterator[PinReport]:
    """Yield a :class:`PinReport` per root pinned on ``storage``'s node."""
    ipfs = find_ipfs_storage(storage)
    replicator = ipfs.replicator
    for cid in ipfs.listdir("")[1]:
        report = PinReport(cid, replicator.where(cid))
        if repair:
            for service in ipfs.pinning_services:
                if report.remote.get(service.endpoint) in _REPAIRABLE:
                    try:
                        service.add(cid, origins=ipfs.transport.origins())
                    except Exception as exc:  # reported per service, the others go on
                        report.remote[service.endpoint] = f"repair failed ({exc})"
                    else:
                        report.repaired.append(service.endpoint)
        yield report
