"""How Django names become Appwrite bucket and file IDs."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from base64 import b32encode

#: Appwrite's ID rule (utopia ``Key`` validator): 1-36 chars, no leading special char.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,35}$")
ID_MAX_LENGTH = 36
_DIGEST_LENGTH = 16  # base32 chars of an 80-bit blake2b digest
_EXTENSION_PATTERN = re.compile(r"^\.[A-Za-z0-9]{1,10}$")
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def _digest(text: str) -> str:
    raw = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=10).digest()
    return b32encode(raw).decode("ascii").lower()


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _UNSAFE_ID_CHARS.sub("_", folded).lstrip("._-")


def file_id_for(file_name: str) -> str:
    """Return the Appwrite file ID for a file name (the last part of a Django name).

    A name that is already a valid ID is its own ID, so ``<bucket>/<fileId>`` names map to
    themselves. Any other name (unicode, spaces, a leading dot or underscore, over 36
    chars) becomes ``<ascii stem>-<digest><.ext>``, where the digest is 80 bits of
    BLAKE2b of the exact original name: distinct names get distinct IDs.
    """
    if ID_PATTERN.match(file_name):
        return file_name
    stem, extension = os.path.splitext(file_name)
    if not _EXTENSION_PATTERN.match(extension) or not stem:
        stem, extension = file_name, ""
    digest = _digest(file_name)
    budget = ID_MAX_LENGTH - len(extension) - _DIGEST_LENGTH - 1
    readable = _ascii(stem)[:budget].rstrip("._-")
    return f"{readable}-{digest}{extension}" if readable else f"{digest}{extension}"


def bucket_id_for(directory: str) -> str:
    """Return the Appwrite bucket ID for a directory name, by the same rule as files."""
    if ID_PATTERN.match(directory):
        return directory
    digest = _digest(directory)
    readable = _ascii(directory)[: ID_MAX_LENGTH - _DIGEST_LENGTH - 1].rstrip("._-")
    return f"{readable}-{digest}" if readable else digest
