"""File helpers shared by every storage of the project: one copy of each.

Telling whether a file object can seek, unwrapping Django ``File`` proxies down to the
object that holds the bytes, finding the path on disk that holds exactly some content,
and the checks ``save()`` and ``open()`` apply to what they are given.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from typing import Any

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import File
from django.core.files.utils import validate_file_name

__all__ = [
    "MAX_WRAPPER_DEPTH",
    "check_readable",
    "disk_path",
    "innermost_file",
    "is_seekable",
    "prepare_save",
    "refuse_write_mode",
    "rewind",
    "rewritable",
    "temporary_file_path",
]

#: How many ``.file`` wrappers are unwrapped (``File`` -> ``TemporaryUploadedFile`` ->
#: ``tempfile._TemporaryFileWrapper`` -> ``BufferedRandom``...), at most.
MAX_WRAPPER_DEPTH = 8


def innermost_file(content: object) -> Any:
    """Unwrap Django ``File`` proxies and tempfile wrappers down to the object with the bytes."""
    raw = content
    for _depth in range(MAX_WRAPPER_DEPTH):
        inner = getattr(raw, "file", None)
        if inner is None or inner is raw:
            break
        raw = inner
    return raw


def is_seekable(file_object: object) -> bool:
    """Tell whether ``file_object`` says it can seek; one without ``seekable()`` cannot."""
    seekable = getattr(file_object, "seekable", None)
    if not callable(seekable):
        return False
    try:
        return bool(seekable())
    except (ValueError, OSError):  # closed, or a stream that cannot tell
        return False


def rewind(content: object) -> None:
    """Seek ``content`` to its start if it can; a stream that cannot is left as it is."""
    with contextlib.suppress(AttributeError, OSError, ValueError, io.UnsupportedOperation):
        content.seek(0)  # type: ignore[attr-defined]


def temporary_file_path(content: object) -> str | None:
    """Return the upload's ``temporary_file_path()`` if it names a file that exists, else None."""
    getter: Callable[[], str] | None = getattr(content, "temporary_file_path", None)
    if not callable(getter):
        return None
    try:
        path = getter()
    except (AttributeError, OSError, NotImplementedError):
        return None
    return path if isinstance(path, str) and path and os.path.isfile(path) else None


def disk_path(content: object) -> str | None:
    """Return a path on disk holding exactly ``content``, if there is one to pass on.

    An upload's temporary file, or the absolute name of the open binary file behind
    ``content`` when that name still leads to the same file (same device and inode). A
    file open for writing is not passed on: its buffer may hold bytes the path lacks.
    """
    path = temporary_file_path(content)
    if path is not None:
        return path
    raw = innermost_file(content)
    name = getattr(raw, "name", None)
    mode = getattr(raw, "mode", "")
    if not isinstance(name, str) or not os.path.isabs(name):
        return None
    if not isinstance(mode, str) or "b" not in mode or not set(mode).isdisjoint("wax+"):
        return None
    try:
        same = os.path.samestat(os.fstat(raw.fileno()), os.stat(name))
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None
    return name if same and os.path.isfile(name) else None


def rewritable(content: File) -> File:
    """Return ``content`` in a form the inner storage can write again.

    ``FileSystemStorage`` moves a ``TemporaryUploadedFile`` into place, so its path is
    gone after the first write; its open descriptor still reads the same bytes, and a
    plain ``File`` over it is copied rather than moved.
    """
    getter = getattr(content, "temporary_file_path", None)
    if getter is None or os.path.exists(getter()):
        return content
    descriptor = getattr(content, "file", None)
    if descriptor is None or descriptor.closed:
        raise FileNotFoundError(
            f"Cannot write {content.name!r} again: the inner storage moved its temporary "
            "file on the first write and the upload was closed since. Keep the upload open "
            "until save() returns."
        )
    descriptor.seek(0)
    return File(descriptor, name=content.name)


# -- what save() and open() are given ----------------------------------------------------

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
    raw = innermost_file(content)
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
        f"{mode!r}, since its object may be shared by other names. Nothing was opened; "
        "save() the new content instead (overwrite=True keeps the name)."
    )
