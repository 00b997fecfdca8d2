"""Requests and responses as the routes see them, the request log, faults, multipart bodies."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from .errors import AppwriteError

VERSION = "1.9.6"


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Message
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def query_value(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None

    def query_list(self, name: str) -> list[str]:
        """Return a PHP-style array parameter: ``name[0]=..&name[1]=..`` or ``name[]=..``."""
        indexed: list[tuple[int, str]] = []
        pattern = re.compile(re.escape(name) + r"\[(\d*)\]$")
        for position, (key, value) in enumerate(self.query):
            match = pattern.match(key)
            if match:
                number = int(match.group(1)) if match.group(1) else 1_000_000 + position
                indexed.append((number, value))
        return [value for _, value in sorted(indexed)]


@dataclass(slots=True)
class _Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: Stream this file region instead of ``body``: (path, offset, length).
    file_region: tuple[Path, int, int] | None = None

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(
            status,
            {"Content-Type": "application/json; charset=UTF-8", **(headers or {})},
            body,
        )

    @classmethod
    def no_content(cls) -> _Response:
        # Real Appwrite sends Swoole's default type; the SDK then returns b''. A 204 that
        # claimed JSON would make the SDK fail to parse the empty body.
        return cls(204, {"Content-Type": "text/html; charset=UTF-8"})

    @classmethod
    def error(cls, error: AppwriteError) -> _Response:
        payload = {
            "message": error.message,
            "code": error.status,
            "type": error.type,
            "version": VERSION,
        }
        headers = {
            "Cache-Control": "no-cache, no-store, must-revalidate",
            "Expires": "0",
            "Pragma": "no-cache",
            **error.headers,
        }
        return cls.json(error.status, payload, headers)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the server answered."""

    method: str
    path: str
    query: str
    status: int
    bytes_received: int
    bytes_sent: int
    headers: dict[str, str]


@dataclass(slots=True)
class InjectedFault:
    """An error the server returns instead of handling matching requests (see ``inject``)."""

    status: int
    type: str
    message: str | None
    method: str | None
    path_pattern: re.Pattern[str] | None
    times: int
    headers: dict[str, str]
    delay: float = 0.0
    #: Matching requests to let through before the fault starts.
    after: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method:
            return False
        return not (self.path_pattern and not self.path_pattern.search(path))


# -- multipart -------------------------------------------------------------------------


@dataclass(slots=True)
class _Part:
    name: str
    filename: str | None
    data: bytes


def _parse_multipart(content_type: str, body: bytes) -> dict[str, _Part]:
    """Parse a ``multipart/form-data`` body, as requests builds it for the SDK."""
    message = Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    if not boundary or not isinstance(boundary, str):
        return {}
    delimiter = b"--" + boundary.encode("latin-1")
    parts: dict[str, _Part] = {}
    for raw in body.split(delimiter)[1:]:
        if raw.startswith(b"--"):
            break
        raw = raw.removeprefix(b"\r\n").removesuffix(b"\r\n")
        head, separator, data = raw.partition(b"\r\n\r\n")
        if not separator:
            continue
        part_headers = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            part_headers[key.strip()] = value.strip()
        disposition = part_headers.get("Content-Disposition", "")
        params = dict(_disposition_params(disposition))
        name = params.get("name")
        if name is None:
            continue
        parts[name] = _Part(name, params.get("filename"), data)
    return parts


def _disposition_params(value: str) -> Iterator[tuple[str, str]]:
    for match in re.finditer(r';\s*([\w*-]+)="((?:[^"\\]|\\.)*)"|;\s*([\w*-]+)=([^;]*)', value):
        if match.group(1):
            yield match.group(1).lower(), match.group(2).replace('\\"', '"')
        else:
            yield match.group(3).lower(), unquote(match.group(4).strip())


def _form_list(parts: dict[str, _Part], name: str) -> list[str] | None:
    """Return a PHP-style array form field (``name[0]``, ``name[1]``...), or None."""
    pattern = re.compile(re.escape(name) + r"\[(\d*)\]$")
    found = []
    for position, (key, part) in enumerate(parts.items()):
        match = pattern.match(key)
        if match:
            number = int(match.group(1)) if match.group(1) else 1_000_000 + position
            found.append((number, part.data.decode("utf-8", "replace")))
    if not found:
        return None
    return [value for _, value in sorted(found)]
