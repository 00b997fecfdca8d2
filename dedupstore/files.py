"""Checks every storage of the project applies to what ``save()`` is given."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import File
from django.core.files.utils import validate_file_name

__all__ = ["prepare_save"]


def prepare_save(
    name: str | None, content: Any, *, default_name: str | None = None
) -> tuple[str, File]:
    """Return the name and the ``File`` to save, or raise a clear, typed error.

    The name falls back to the content's own name (then to ``default_name``) and must pass
    Django's ``validate_file_name``; raw ``str``/``bytes`` are refused rather than wrapped
    into a ``File`` that cannot be read.
    """
    if name is None:
        name = getattr(content, "name", None) or default_name
    if not name or not isinstance(name, str):
        raise SuspiciousFileOperation(f"Cannot save content without a file name: {name!r}")
    if isinstance(content, str | bytes | bytearray | memoryview):
        raise TypeError(
            f"save() takes a File-like object, not {type(content).__name__}; wrap the "
            "data in django.core.files.base.ContentFile"
        )
    if not hasattr(content, "chunks"):
        content = File(content, name)
    validate_file_name(name, allow_relative_path=True)
    return name, content
