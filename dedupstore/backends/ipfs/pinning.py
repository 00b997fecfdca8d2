"""Replicas: remote pins on services that speak the IPFS Pinning Service API (v1.0.0).

Hosted pinning services and IPFS Cluster implement that specification
(``dedupstore/testing/specs/pinning-service-api-1.0.0.yaml``). A save pins locally, then
asks each configured service to pin the CID too, giving the node's addresses as
``origins`` so the service can fetch the blocks. ``replicas`` says how many services must
report ``pinned`` before the save returns (0: none, the requests and the following of
their status run in the background). The status (``queued``, ``pinning``, ``pinned``,
``failed``) is followed with bounded retries; a service that is down is logged and never
loses the local pin or blocks a read. The last reference's delete removes the remote
pins too.

The token of a service never appears in messages, logs, ``repr()``, ``deconstruct()`` or
migrations: only its endpoint does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from django.core.exceptions import ImproperlyConfigured

from .errors import IPFSStorageError

__all__ = [
    "PIN_STATUSES",
    "PinningService",
    "PinningServiceError",
    "ReplicationError",
    "Replicator",
    "parse_services",
]

logger = logging.getLogger("dedupstore.backends.ipfs")

PIN_STATUSES = ("queued", "pinning", "pinned", "failed")
_FIRST_POLL = 0.05
_MAX_POLL = 2.0


class PinningServiceError(IPFSStorageError):
    """A pinning service could not be reached or answered with an error."""


class ReplicationError(IPFSStorageError):
    """Fewer services than ``replicas`` reported ``pinned`` in time; the local pin stays."""


@dataclass(frozen=True)
class PinningService:
    """One service: its API endpoint (``https://host/psa``) and its access token."""

    endpoint: str
    token: str = field(repr=False)
    timeout: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoint", self.endpoint.rstrip("/"))

    def __repr__(self) -> str:
        return f"<PinningService {self.endpoint}>"

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # no proxy from the environment sees the token
        session.headers["Authorization"] = f"Bearer {self.token}"
        return session

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.endpoint}{path}"
        with self._session() as session:
            try:
                response = session.request(method, url, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                raise PinningServiceError(
                    f"the pinning service {self.endpoint} could not be reached "
                    f"({type(exc).__name__})"
                ) from None
        if response.status_code >= 400:
            reason = ""
            try:
                error = response.json().get("error") or {}
                reason = f": {error.get('reason', '')} {error.get('details', '')}".rstrip()
            except (ValueError, AttributeError):
                pass
            raise PinningServiceError(
                f"the pinning service {self.endpoint} answered {method} {path.split('?')[0]} "
                f"with HTTP {response.status_code}{reason}"
            )
        return response.json() if response.content else None

    def add(self, cid: str, *, name: str | None = None, origins: Iterable[str] = ()) -> dict:
        """``POST /pins``: request a pin; return the PinStatus."""
        pin: dict[str, Any] = {"cid": cid, "origins": list(origins)[:20]}
        if name:
            pin["name"] = name[:255]
        return dict(self._call("POST", "/pins", json=pin))

    def get(self, requestid: str) -> dict:
        """``GET /pins/{requestid}``: the PinStatus."""
        return dict(self._call("GET", f"/pins/{requestid}"))

    def find(self, cid: str, statuses: Iterable[str] = PIN_STATUSES) -> list[dict]:
        """``GET /pins?cid=...&status=...``: every pin request of ``cid`` in ``statuses``."""
        params = {"cid": cid, "status": ",".join(statuses), "limit": 1000}
        return list(self._call("GET", "/pins", params=params).get("results") or [])

    def delete(self, requestid: str) -> None:
        """``DELETE /pins/{requestid}``."""
        self._call("DELETE", f"/pins/{requestid}")


def parse_services(value: Any, *, timeout: float) -> tuple[PinningService, ...]:
    """Validate ``pinning_services`` (a list of ``{"endpoint": ..., "token": ...}``)."""
    if value is None:
        return ()
    if isinstance(value, Mapping) or not isinstance(value, list | tuple):
        raise ImproperlyConfigured(
            'pinning_services must be a list of {"endpoint": ..., "token": ...} dicts'
        )
    services = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping) or set(item) - {"endpoint", "token"}:
            raise ImproperlyConfigured(
                f'pinning_services[{index}] must be {{"endpoint": ..., "token": ...}}'
            )
        endpoint, token = item.get("endpoint"), item.get("token")
        parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ImproperlyConfigured(
                f"pinning_services[{index}]: endpoint must be an http(s) URL"
            )
        if not isinstance(token, str) or not token:
            raise ImproperlyConfigured(
                f"pinning_services[{index}] ({endpoint}): token must be a non-empty string"
            )
        assert isinstance(endpoint, str)
        services.append(PinningService(endpoint, token, timeout))
    return tuple(services)


class Replicator:
    """Request, follow and remove the remote pins of the CIDs a storage saves."""

    def __init__(
        self,
        services: tuple[PinningService, ...],
        *,
        replicas: int,
        timeout: float,
        origins: Callable[[], list[str]],
    ) -> None:
        if replicas > len(services):
            raise ImproperlyConfigured(
                f"replicas={replicas} needs at least as many pinning_services "
                f"({len(services)} configured)"
            )
        self.services = services
        self.replicas = replicas
        self.timeout = timeout
        self._origins = origins
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    def _background(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=4, thread_name_prefix="dedupstore-ipfs-replicas"
                )
            return self._executor

    def replicate(self, cid: str, *, name: str | None = None) -> None:
        """Request a pin of ``cid`` on every service; wait for ``replicas`` of them."""
        if not self.services:
            return
        if self.replicas == 0:
            self._background().submit(self._replicate_logged, cid, name)
            return
        pinned = self._replicate(cid, name)
        if pinned < self.replicas:
            raise ReplicationError(
                f"{cid}: {pinned} of the required {self.replicas} pinning services reported "
                f"pinned within {self.timeout:g} s; it stays pinned locally"
            )

    def _replicate_logged(self, cid: str, name: str | None) -> None:
        try:
            self._replicate(cid, name)
        except Exception:  # a background thread: report, never raise into nothing
            logger.warning("replicating %s failed", cid, exc_info=True)

    def _replicate(self, cid: str, name: str | None) -> int:
        try:
            origins = self._origins()
        except Exception:
            logger.warning("could not list this node's addresses for %s", cid, exc_info=True)
            origins = []
        requests_made: dict[PinningService, str] = {}
        for service in self.services:
            try:
                existing = service.find(cid, ("queued", "pinning", "pinned"))
                status = existing[0] if existing else service.add(cid, name=name, origins=origins)
                requests_made[service] = str(status["requestid"])
            except (PinningServiceError, KeyError, TypeError) as exc:
                logger.warning("pinning %s on %s: %s", cid, service.endpoint, exc)
        return self._follow(cid, requests_made)

    def _follow(self, cid: str, pending: dict[PinningService, str]) -> int:
        """Poll until enough are pinned, all are settled, or the deadline passes."""
        deadline = time.monotonic() + self.timeout
        wanted = self.replicas or len(pending)
        pinned = 0
        delay = _FIRST_POLL
        while pending:
            for service, requestid in list(pending.items()):
                try:
                    status = service.get(requestid).get("status")
                except PinningServiceError as exc:
                    logger.warning("following %s on %s: %s", cid, service.endpoint, exc)
                    continue
                if status == "pinned":
                    pinned += 1
                    del pending[service]
                elif status == "failed":
                    logger.warning("%s: the pinning service %s failed", cid, service.endpoint)
                    del pending[service]
            if pinned >= wanted or not pending or time.monotonic() >= deadline:
                break
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, _MAX_POLL)
        for service in pending:
            logger.warning(
                "%s: still not pinned on %s after %g s", cid, service.endpoint, self.timeout
            )
        return pinned

    def remove(self, cid: str) -> None:
        """Delete every pin request of ``cid`` on every service (failures are logged)."""
        for service in self.services:
            try:
                for status in service.find(cid):
                    service.delete(str(status["requestid"]))
            except (PinningServiceError, KeyError, TypeError) as exc:
                logger.warning(
                    "removing the remote pin of %s on %s: %s", cid, service.endpoint, exc
                )

    def where(self, cid: str) -> dict[str, str]:
        """Return ``{endpoint: status}`` of ``cid`` per service, or missing/unreachable."""
        found: dict[str, str] = {}
        for service in self.services:
            try:
                statuses = [status.get("status", "") for status in service.find(cid)]
            except PinningServiceError:
                found[service.endpoint] = "unreachable"
                continue
            best = next(
                (s for s in ("pinned", "pinning", "queued", "failed") if s in statuses), None
            )
            found[service.endpoint] = best or "missing"
        return found
