"""How ``DedupStorage`` uses an inner storage's naming hooks without ever overwriting.

Django lets a storage choose names through ``get_available_name``,
``get_alternative_name`` and (Django 5.1+) ``is_name_available``. ``DedupStorage`` uses an
inner storage's hooks, except where they would hand out a taken name so that a write
replaces it (``FileSystemStorage(allow_overwrite=True)``, django-storages'
``file_overwrite=True``...): an object other references share must never change.
"""

from __future__ import annotations

import os
import pathlib
import posixpath
from pathlib import PurePosixPath

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import Storage

__all__ = [
    "OVERWRITE_FLAGS",
    "creates_exclusively",
    "inner_may_overwrite",
    "inner_names_are_free",
    "overwrite_flag",
    "truncate_to_fit",
    "url_name",
]

#: Attributes by which common storages overwrite taken names themselves: Django's
#: ``FileSystemStorage`` (``allow_overwrite``, kept as ``_allow_overwrite``),
#: django-storages' S3 and Google Cloud (``file_overwrite``) and Azure (``overwrite_files``).
OVERWRITE_FLAGS = ("allow_overwrite", "_allow_overwrite", "file_overwrite", "overwrite_files")


def overwrite_flag(inner: Storage) -> tuple[str, bool] | None:
    """Return the inner storage's overwrite switch and its value, if it has one."""
    for flag in OVERWRITE_FLAGS:
        value = getattr(inner, flag, None)
        if isinstance(value, bool):
            return flag.lstrip("_"), value
    return None


def alternative_name(inner: Storage, name: str) -> str:
    """Return ``inner``'s alternative for ``name``, keeping every suffix as Django does.

    ``a.tar.gz`` becomes ``a_<7 chars>.tar.gz``, as ``Storage.get_available_name`` names it.
    """
    directory, file_name = posixpath.split(name)
    ext = "".join(PurePosixPath(file_name).suffixes)
    root = file_name.removesuffix(ext) if ext else file_name
    return posixpath.join(directory, inner.get_alternative_name(root, ext))


def creates_exclusively(inner: Storage) -> bool:
    """Tell whether a write of a taken name fails rather than replace the object.

    Only ``FileSystemStorage`` (``O_EXCL``) does, unless told to overwrite: object stores
    (S3, Google Cloud, Azure) replace an object on every write, whatever their
    ``file_overwrite``.
    """
    from django.core.files.storage import FileSystemStorage

    if not isinstance(inner, FileSystemStorage):
        return False
    # OS_OPEN_FLAGS exists up to Django 5.2 (deprecated in 5.1, gone in 6.0).
    flags = getattr(inner, "OS_OPEN_FLAGS", os.O_EXCL)
    if not isinstance(flags, int) or not flags & os.O_EXCL:
        return False
    return not getattr(inner, "_allow_overwrite", False)


def inner_may_overwrite(inner: Storage) -> bool:
    """Tell whether the inner storage's own naming may hand out a taken name."""
    flag = overwrite_flag(inner)
    if flag is not None and flag[1]:
        return True
    flags = getattr(inner, "OS_OPEN_FLAGS", None)
    return isinstance(flags, int) and not flags & os.O_EXCL


def inner_names_are_free(inner: Storage) -> bool:
    """Tell whether ``inner.get_available_name`` only returns names it found free.

    True for Django's own algorithm over Django's own availability test, and for the
    django-storages backends whose overwrite switch is off (they override
    ``get_available_name`` only to honour it). A storage that overrides either hook in
    another way may return a taken name: its answer is checked.
    """
    cls = type(inner)
    own_test = getattr(cls, "is_name_available", None)
    if own_test is not None and own_test is not Storage.is_name_available:
        from django.core.files.storage import FileSystemStorage

        if own_test is not FileSystemStorage.is_name_available:
            return False
    if cls.get_available_name is Storage.get_available_name:
        return True
    flag = overwrite_flag(inner)
    return (
        flag is not None
        and flag[0] in ("file_overwrite", "overwrite_files")
        and cls.__module__.startswith("storages.")
    )


def truncate_to_fit(name: str, max_length: int | None) -> str:
    """Shorten ``name`` to ``max_length`` as ``FileSystemStorage(allow_overwrite=True)`` does.

    The file root loses its last characters; the directory and every suffix
    (``.tar.gz``) are kept. Raise ``SuspiciousFileOperation`` when nothing of the root
    would be left.
    """
    if not max_length or len(name) <= max_length:
        return name
    dir_name, file_name = posixpath.split(name)
    file_ext = "".join(pathlib.PurePosixPath(file_name).suffixes)
    file_root = file_name.removesuffix(file_ext)
    kept = len(file_root) - (len(name) - max_length)
    if kept <= 0:
        raise SuspiciousFileOperation(
            f'Storage can not find an available filename for "{name}". Please make sure '
            'that the corresponding file field allows sufficient "max_length".'
        )
    return posixpath.join(dir_name, file_root[:kept] + file_ext)


def url_name(name: str | os.PathLike[str]) -> str:
    """Return ``name`` as ``url()`` passes it on: Django's sanitising, traversal refused.

    Leading slashes and backslashes are dropped, as ``FileSystemStorage.url`` does (Django
    ticket #25905), so a stored name such as ``/evil.com`` never links to another host;
    backslashes become slashes. A ``..`` segment raises ``SuspiciousFileOperation``.
    """
    if not isinstance(name, str | os.PathLike):
        raise TypeError(f"url() takes a file name, not {type(name).__name__}")
    relative = os.fspath(name).replace("\\", "/").lstrip("/")
    if ".." in relative.split("/"):
        raise SuspiciousFileOperation(f"Detected path traversal attempt in {name!r}")
    return relative
