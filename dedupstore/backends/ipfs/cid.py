"""Parse and validate CIDs and storage names without touching any node.

The storage's names are ``<CID>`` or ``<CID>/<path>`` (``wrap_with_directory``). Every
method validates its name here first, so a malformed name never costs a network call and
a traversal-like name raises Django's ``SuspiciousFileOperation``.

Only what the backend needs is implemented: CIDv0 (base58btc ``Qm…``) and CIDv1 in the
multibase encodings Kubo and gateways print (``b``/``B`` base32, ``z`` base58btc,
``f``/``F`` base16, ``k``/``K`` base36), with the dag-pb and raw codecs that hold files.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from django.core.exceptions import SuspiciousFileOperation

from .errors import InvalidCIDError

__all__ = ["CID", "DAG_PB", "RAW", "IPFSPath", "parse_cid", "parse_name"]

DAG_PB = 0x70
RAW = 0x55
_SHA2_256 = 0x12
_CODEC_NAMES = {DAG_PB: "dag-pb", RAW: "raw"}
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}
_B36_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
# Longest CID text we accept: a 64-byte digest in base16 is ~140 characters.
_MAX_CID_LENGTH = 200
_MAX_SEGMENT_BYTES = 255


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        try:
            number = number * 58 + _B58_INDEX[char]
        except KeyError:
            raise ValueError(f"{char!r} is not a base58btc character") from None
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def _b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    chars = []
    while number:
        number, rem = divmod(number, 58)
        chars.append(_B58_ALPHABET[rem])
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + "".join(reversed(chars))


def _b36decode(text: str) -> bytes:
    number = int(text, 36)
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * (len(text) - len(text.lstrip("0"))) + body


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@dataclass(frozen=True, slots=True)
class CID:
    """A parsed CID: version, codec and multihash (hash function code + digest)."""

    version: int
    codec: int
    multihash: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> CID:
        """Decode a binary CID (as found in dag-pb links)."""
        if len(data) == 34 and data[0] == _SHA2_256 and data[1] == 32:
            return cls(0, DAG_PB, bytes(data))
        version, pos = _read_varint(data, 0)
        if version != 1:
            raise ValueError(f"unsupported CID version {version}")
        codec, pos = _read_varint(data, pos)
        multihash = bytes(data[pos:])
        _check_multihash(multihash)
        return cls(1, codec, multihash)

    @property
    def hash_code(self) -> int:
        return _read_varint(self.multihash, 0)[0]

    def to_bytes(self) -> bytes:
        if self.version == 0:
            return self.multihash
        return _varint(1) + _varint(self.codec) + self.multihash

    def to_v1(self) -> CID:
        return CID(1, self.codec, self.multihash)

    def base32(self) -> str:
        """Return the CIDv1 base32 form (what subdomain gateways need: DNS is case-blind)."""
        raw = self.to_v1().to_bytes()
        return "b" + base64.b32encode(raw).decode("ascii").rstrip("=").lower()

    def __str__(self) -> str:
        if self.version == 0:
            return _b58encode(self.multihash)
        return self.base32()


def _check_multihash(multihash: bytes) -> None:
    code, pos = _read_varint(multihash, 0)
    length, pos = _read_varint(multihash, pos)
    if length == 0 or length > 128 or len(multihash) - pos != length:
        raise ValueError("the multihash digest length does not match its header")
    if code == _SHA2_256 and length != 32:
        raise ValueError("a sha2-256 multihash must have a 32-byte digest")


def parse_cid(text: str) -> CID:
    """Parse a CID string or raise :class:`InvalidCIDError`; never contacts a node."""
    if not isinstance(text, str) or not text:
        raise InvalidCIDError(f"not a CID: {text!r}")
    if len(text) > _MAX_CID_LENGTH or not text.isascii() or not text.isalnum():
        raise InvalidCIDError(f"not a CID: {text[:80]!r}")
    try:
        if len(text) == 46 and text.startswith("Qm"):
            multihash = _b58decode(text)
            if len(multihash) != 34 or multihash[:2] != b"\x12\x20":
                raise ValueError("a CIDv0 is a base58btc sha2-256 multihash")
            return CID(0, DAG_PB, multihash)
        prefix, body = text[0], text[1:]
        if prefix in "bB":
            padded = body.upper() + "=" * (-len(body) % 8)
            raw = base64.b32decode(padded)
        elif prefix == "z":
            raw = _b58decode(body)
        elif prefix in "fF":
            raw = binascii.unhexlify(body)
        elif prefix in "kK":
            raw = _b36decode(body.lower())
        else:
            raise ValueError(f"unsupported multibase prefix {prefix!r}")
        cid = CID.from_bytes(raw)
    except (ValueError, binascii.Error) as exc:
        raise InvalidCIDError(f"not a CID: {text[:80]!r} ({exc})") from None
    if cid.codec not in _CODEC_NAMES:
        raise InvalidCIDError(
            f"CID {text[:80]!r} has codec 0x{cid.codec:x}; only dag-pb and raw hold files"
        )
    return cid


@dataclass(frozen=True, slots=True)
class IPFSPath:
    """A validated storage name: a root CID and the path segments below it."""

    root: CID
    root_text: str
    segments: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return "/".join((self.root_text, *self.segments))

    @property
    def filename(self) -> str | None:
        return self.segments[-1] if self.segments else None

    def __str__(self) -> str:
        return self.name


def parse_name(name: str) -> IPFSPath:
    """Validate a storage name ``<CID>[/<segment>…]``.

    Raise ``SuspiciousFileOperation`` for traversal-like names (absolute paths, ``..``,
    backslashes, NUL) and :class:`InvalidCIDError` for anything else that is not a name
    this storage could have returned.
    """
    if not isinstance(name, str) or not name:
        raise InvalidCIDError(f"not an IPFS name: {name!r}")
    if "\0" in name or "\\" in name or name.startswith("/"):
        raise SuspiciousFileOperation(f"Detected path traversal attempt in {name[:120]!r}")
    parts = name.split("/")
    if any(part in {".", ".."} for part in parts):
        raise SuspiciousFileOperation(f"Detected path traversal attempt in {name[:120]!r}")
    root_text, segments = parts[0], tuple(parts[1:])
    for segment in segments:
        if not segment:
            raise InvalidCIDError(f"empty path segment in IPFS name {name[:120]!r}")
        if len(segment.encode("utf-8", "surrogatepass")) > _MAX_SEGMENT_BYTES:
            raise InvalidCIDError(f"path segment longer than 255 bytes in {name[:120]!r}")
    return IPFSPath(parse_cid(root_text), root_text, segments)
