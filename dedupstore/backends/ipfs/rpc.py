"""A client of a real Kubo daemon's RPC API (``POST /api/v0/…``).

Built on ``requests`` with one pooled :class:`requests.Session` per client because
IPFS-Toolkit's own HTTP client (``ipfs_remote``) cannot be used: it does not import with
any current ``ipfs_tk`` (``from ipfs_tk_generics import IpfsClient`` fails), and
``IpfsRemote(address)`` ignores its address argument in favour of an environment
variable. ``requests`` streams request bodies (uploads of any size in bounded memory) and
responses, pools keep-alive connections, and takes a timeout on every call.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import urllib3

from dedupstore.streams import SeekableRawReader

from .errors import (
    ContentNotFoundError,
    IPFSAuthenticationError,
    IPFSConnectionError,
    IPFSRPCError,
    IPFSTimeoutError,
)
from .importer import DEFAULT_CHUNK_SIZE

__all__ = ["AddResult", "KuboRPCClient", "RPCCatReader", "api_base_url", "multiaddr_origin"]

DEFAULT_API_URL = "http://127.0.0.1:5001"
_CHUNK_SIZE = 1024 * 1024
_MULTIADDR = re.compile(
    r"^/(?P<proto>ip4|ip6|dns|dns4|dns6)/(?P<host>[^/]+)/tcp/(?P<port>\d+)"
    r"(?P<scheme>/http|/https|/tls/http)?/?$"
)
# Kubo's error text for content that is not local when asked with offline=true.
_NOT_LOCAL = ("not found locally", "could not find", "no link named", "not found")


#: Addresses that mean "every interface" when listening: a client reaches them on loopback.
_UNSPECIFIED_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def multiaddr_origin(address: str) -> str | None:
    """Turn ``/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>[/http|/https|/tls/http]`` into
    ``http(s)://host:port``; return ``None`` if ``address`` is not such a multiaddr.

    A listen-everywhere host (``0.0.0.0``, ``::``, as in django-ipfs-storage's defaults)
    becomes the loopback address a client can actually reach.
    """
    match = _MULTIADDR.match(address.strip())
    if not match:
        return None
    port = int(match["port"])
    if not 0 < port < 65536:
        raise ValueError(f"port {port} of {address!r} is out of range")
    host = _UNSPECIFIED_HOSTS.get(match["host"], match["host"])
    if match["proto"] == "ip6":
        host = f"[{host}]"
    scheme = "https" if match["scheme"] in ("/https", "/tls/http") else "http"
    return f"{scheme}://{host}:{port}"


def api_base_url(api_url: str) -> str:
    """Turn a multiaddr or an http(s) URL into the ``…/api/v0`` base URL."""
    api_url = api_url.strip()
    origin = multiaddr_origin(api_url)
    if origin is not None:
        return f"{origin}/api/v0"
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"not a Kubo RPC address: {api_url!r} (use a multiaddr such as "
            "/ip4/127.0.0.1/tcp/5001 or an http(s):// URL)"
        )
    path = parts.path.rstrip("/")
    if not path.endswith("/api/v0"):
        path += "/api/v0"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _display(url: str) -> str:
    """Drop any ``user:password@`` from a URL shown in messages."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return url


@dataclass(frozen=True, slots=True)
class AddResult:
    """What ``add`` stored: the root CID, the name to keep (``<dir>/<file>`` if wrapped), and
    Kubo's ``Size`` (the DAG's size, blocks included, not the file's)."""

    cid: str
    name: str
    size: int | None = None


class KuboRPCClient:
    """A minimal, typed client of the Kubo RPC API.

    Every call is a ``POST`` (Kubo refuses ``GET`` since 0.5) with a timeout; failures
    become :mod:`~dedupstore.backends.ipfs.errors` that name the URL, never the
    ``Authorization`` value.
    """

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        *,
        auth: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float | None = None,
    ) -> None:
        self.base_url = api_base_url(api_url)
        self.display_url = _display(self.base_url)
        self.timeout = timeout
        self.connect_timeout = min(timeout, 10.0) if connect_timeout is None else connect_timeout
        self._auth = auth
        self._session: requests.Session | None = None

    def __repr__(self) -> str:
        return f"<KuboRPCClient {self.display_url}>"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None
        return state

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            session = requests.Session()
            # trust_env off: a proxy from the environment must not see RPC calls or auth.
            session.trust_env = False
            if self._auth:
                session.headers["Authorization"] = self._auth
            self._session = session
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- transport -------------------------------------------------------------------

    def _post(
        self,
        command: str,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        *,
        data: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        not_found_ok: bool = False,
    ) -> requests.Response:
        url = f"{self.base_url}/{command}"
        try:
            response = self.session.post(
                url,
                params=params,
                data=data,
                headers=headers,
                stream=stream,
                timeout=(self.connect_timeout, self.timeout),
            )
        except requests.Timeout as exc:
            raise IPFSTimeoutError(
                f"the Kubo RPC API at {self.display_url} did not answer {command} within "
                f"{self.timeout:g} s"
            ) from exc
        except requests.ConnectionError as exc:
            raise IPFSConnectionError(
                f"cannot reach the Kubo RPC API at {self.display_url} ({command}): "
                f"{type(exc).__name__}"
            ) from exc
        if response.status_code < 400:
            return response
        try:
            body = response.text[:2000]
        finally:
            response.close()
        message = body
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(body).get("Message", body)
        status = response.status_code
        where = f"the Kubo RPC API at {self.display_url}"
        if status in (401, 403):
            raise IPFSAuthenticationError(
                f"{where} refused {command} (HTTP {status}): "
                + (
                    "the configured api_auth was rejected"
                    if self._auth
                    else "it requires an Authorization header; set api_auth / IPFS_STORAGE_API_AUTH"
                )
            )
        if status in (404, 405):
            raise IPFSRPCError(
                f"{where} does not serve {command} (HTTP {status}): is api_url a Kubo RPC "
                "API (port 5001), not a gateway?",
                status=status,
                command=command,
            )
        if not_found_ok and any(marker in message.lower() for marker in _NOT_LOCAL):
            raise ContentNotFoundError(f"{where}: {message}")
        raise IPFSRPCError(
            f"{where} failed {command} (HTTP {status}): {message}", status=status, command=command
        )

    # -- commands --------------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        return self._post("version").json()

    def id(self) -> dict[str, Any]:
        return self._post("id").json()

    def add(
        self,
        content: IO[bytes],
        filename: str,
        *,
        size: int | None = None,
        wrap_with_directory: bool = False,
        cid_version: int = 1,
    ) -> AddResult:
        """Add and pin ``content`` (streamed); return its CID and the name to store.

        Every option that decides the CID is sent explicitly (a daemon's own defaults
        never apply): ``cid_version`` 1 means raw leaves, 0 dag-pb leaves; the chunker is
        Kubo's default, 256 KiB, as the embedded transport's importer uses.

        The body is a one-part multipart stream; its length is declared when ``size`` is
        known (proxies prefer it), else it is sent chunked.
        """
        boundary = uuid.uuid4().hex
        disposition = f'form-data; name="file"; filename="{quote(filename, safe="")}"'
        head = (
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def body() -> Iterator[bytes]:
            yield head
            while chunk := content.read(_CHUNK_SIZE):
                yield chunk
            yield tail

        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        data: Any = body()
        if size is not None:
            headers["Content-Length"] = str(len(head) + size + len(tail))
            data = _SizedIterable(body(), len(head) + size + len(tail))
        params = {
            "pin": "true",
            "cid-version": str(cid_version),
            "raw-leaves": "true" if cid_version == 1 else "false",
            "chunker": f"size-{DEFAULT_CHUNK_SIZE}",
            "progress": "false",
            "wrap-with-directory": "true" if wrap_with_directory else "false",
        }
        response = self._post("add", params, data=data, headers=headers)
        entries = [json.loads(line) for line in response.text.splitlines() if line.strip()]
        if not entries:
            raise IPFSRPCError(f"the Kubo RPC API at {self.display_url} returned no CID for add")
        if wrap_with_directory:
            root = next((e for e in entries if e.get("Name", "") == ""), entries[-1])
            return AddResult(root["Hash"], f"{root['Hash']}/{filename}")
        last = entries[-1]
        size_text = last.get("Size")
        return AddResult(last["Hash"], last["Hash"], int(size_text) if size_text else None)

    def cat(self, path: str, *, offset: int = 0, length: int | None = None) -> requests.Response:
        """Return the streamed response of ``cat`` (the caller closes it)."""
        params: dict[str, Any] = {"arg": f"/ipfs/{path}"}
        if offset:
            params["offset"] = offset
        if length is not None:
            params["length"] = length
        return self._post("cat", params, stream=True, not_found_ok=True)

    def stat(self, path: str, *, offline: bool = True) -> dict[str, Any]:
        """``files/stat`` of ``/ipfs/<path>``; ``offline`` never starts a network search."""
        params = {"arg": f"/ipfs/{path}", "offline": "true" if offline else "false"}
        return self._post("files/stat", params, not_found_ok=True).json()

    def pin_ls(
        self, path: str | None = None, *, type: str = "recursive", offline: bool = True
    ) -> dict[str, str]:
        """Return ``{cid: pin type}``; for one ``path``, empty if it is not pinned."""
        params: dict[str, Any] = {"type": type, "offline": "true" if offline else "false"}
        if path is not None:
            params["arg"] = f"/ipfs/{path}"
        try:
            keys = self._post("pin/ls", params, not_found_ok=True).json().get("Keys") or {}
        except ContentNotFoundError:
            return {}
        except IPFSRPCError as exc:
            if path is not None and "not pinned" in str(exc):
                return {}
            raise
        return {cid: (info or {}).get("Type", "") for cid, info in keys.items()}

    def pin_add(self, cid: str) -> None:
        self._post("pin/add", {"arg": cid, "recursive": "true"})

    def pin_rm(self, cid: str) -> bool:
        """Unpin ``cid`` (recursive); return False if it was not pinned. Never collects."""
        try:
            self._post("pin/rm", {"arg": cid, "recursive": "true"})
        except IPFSRPCError as exc:
            if "not pinned" in str(exc):
                return False
            raise
        return True


class _SizedIterable:
    """An iterable body with a known length, so ``requests`` sends Content-Length."""

    def __init__(self, chunks: Iterator[bytes], length: int) -> None:
        self._chunks = chunks
        self.len = length

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def __len__(self) -> int:
        return self.len


class RPCCatReader(SeekableRawReader):
    """A seekable raw stream over ``cat``: a seek reopens the stream at the new offset."""

    def __init__(self, client: KuboRPCClient, path: str, size: int) -> None:
        super().__init__(size)
        self._client = client
        self._path = path
        self._response: requests.Response | None = None

    def _moved(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        self._ensure_open()
        if self._pos >= self.size or not len(buffer):
            return 0
        if self._response is None:
            self._response = self._client.cat(self._path, offset=self._pos)
        try:
            count = self._response.raw.readinto(buffer)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise IPFSTimeoutError(
                f"the Kubo RPC API at {self._client.display_url} stalled while sending "
                f"{self._path} (timeout {self._client.timeout:g} s)"
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise IPFSConnectionError(
                f"reading {self._path} from {self._client.display_url} failed: {type(exc).__name__}"
            ) from exc
        if not count:
            raise OSError(
                f"{self._client.display_url} ended {self._path} at byte {self._pos} of {self.size}"
            )
        self._pos += count
        return count

    def close(self) -> None:
        self._moved()
        super().close()
