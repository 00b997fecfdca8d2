"""Checks every storage of the project applies to what ``save()`` is given."""

from __future__ import annotations

import io
import os
from typing import Any

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import File
from django.core.files.utils import validate_file_name

__all__ = ["check_readable", "prepare_save", "refuse_write_mode"]

#: What ``save()`` accepts, for error messages.
_ACCEPTED = (
    "a django.core.files.base.File (an upload, ContentFile(b'...'), File(open(path, 'rb'))) "
    "or a binary file object with read()"
)
#: Characters of an ``open()`` mode that write.
_WRITE_MODE_CHARACTERS = frozenset("wax+")


def prepare_save(
    name: Any, content: Any, *, default_name: str | None = None, validate_name: bool = True
) -> tuple[str, File]:
    """Return the name and the ``File`` to save, or raise a clear, typed error.

    The name falls back to the content's own name (then to ``default_name``), may be a
    ``pathlib.Path`` as Django allows, and must pass Django's ``validate_file_name``. Raw
    ``str``/``bytes``, ``None`` and other objects without ``read()`` raise ``TypeError``;
    a closed file raises ``ValueError`` naming it.
    """
    if isinstance(content, str | bytes | bytearray | memoryview):
        raise TypeError(
            f"save() takes {_ACCEPTED}, not {type(content).__name__}; wrap the data in "
            "django.core.files.base.ContentFile"
        )
    if not (hasattr(content, "chunks") or callable(getattr(content, "read", None))):
        raise TypeError(f"save() takes {_ACCEPTED}, not {type(content).__name__}")
    if name is None:
        name = getattr(content, "name", None) or default_name
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not name or not isinstance(name, str):
        raise SuspiciousFileOperation(f"Cannot save content without a file name: {name!r}")
    if "\x00" in name:
        raise SuspiciousFileOperation(f"File name {name!r} contains a NUL byte")
    if not hasattr(content, "chunks"):
        content = File(content, name)
    check_readable(content, name)
    if validate_name:  # False: the caller validates (and normalises) the name itself
        validate_file_name(name, allow_relative_path=True)
    return name, content


def check_readable(content: File, name: str) -> None:
    """Raise ``ValueError`` if ``content`` is closed, ``TypeError`` if it is a text-mode file.

    A text-mode file reads decoded text (CRLF becomes LF) while the hasher reads its raw
    bytes, so what is hashed would not be what is written. ``ContentFile(str)`` is fine:
    its text is stored as the UTF-8 bytes that are hashed.
    """
    if getattr(content, "closed", False):
        label = getattr(content, "name", None) or name
        raise ValueError(
            f"Cannot save {name!r}: the file {label!r} is closed. Pass an open file (or "
            "reopen it with .open('rb')) and keep it open until save() returns."
        )
    raw = _innermost_file(content)
    if isinstance(raw, io.TextIOBase) and not isinstance(raw, io.StringIO):
        label = getattr(content, "name", None) or name
        raise TypeError(
            f"Cannot save {name!r}: {label!r} is open in text mode, which would store decoded "
            "text (newlines translated) rather than the bytes that are hashed. Open it in "
            "binary mode: File(open(path, 'rb'))."
        )


def refuse_write_mode(name: str, mode: str, storage: str) -> None:
    """Raise ``ValueError`` if ``mode`` would write to a stored (possibly shared) object."""
    if _WRITE_MODE_CHARACTERS.isdisjoint(mode):
        return
    raise ValueError(
        f"{storage} is read-only through open(): {name!r} cannot be opened with mode "
        f"{mode!r}. Stored objects are shared by every name saved with the same content, "
        "and the index records their digest: writing in place would change the file under "
        "every other reference and make its digest wrong. Write the new content with "
        "save() (with overwrite=True to keep the same name) and delete() the old name."
    )


def _innermost_file(content: object) -> Any:
    raw = content
    for _depth in range(8):
        inner = getattr(raw, "file", None)
        if inner is None or inner is raw:
            break
        raw = inner
    return raw
