"""The hit as a Redis Function (``FCALL``): its library, and how a server's replies read."""

from __future__ import annotations

import hashlib

import redis


class HitFunction:
    """The hit script as a Redis Function (Redis 7+), for the one call every hit makes.

    A script's chunk defines its snippets' ~50 local functions again on every run; a
    library's run once, at ``FUNCTION LOAD``: about a quarter of a hit's time in Redis.
    The body is ``hit.lua`` unchanged (``KEYS`` and ``ARGV`` are the callback's
    parameters), after resetting ``packed.lua``'s per-call caches. Library and function
    names carry a hash of the code, so versions of dedupstore never replace each other's.
    """

    def __init__(self, snippets: str, body: str) -> None:
        tag = hashlib.sha1((snippets + body).encode("utf-8")).hexdigest()[:16]
        self.name = f"dedupstore_hit_{tag}"
        self.library = (
            f"#!lua name=dedupstore_{tag}\n{snippets}\n"
            f"redis.register_function('{self.name}', function(KEYS, ARGV)\n"
            "packed_cache, packed_meta = {}, {}\n"
            f"{body}\nend)\n"
        )


#: What ``_fcall`` returns where the server cannot run functions (nothing ran).
NO_FUNCTIONS = object()


def functions_unavailable(exc: redis.ResponseError) -> bool:
    """Whether ``FCALL`` cannot run here at all: a Redis before 7, or an ACL denying it."""
    text = str(exc).lower()
    return "unknown command" in text or text.startswith("noperm") or "no permissions" in text


def function_missing(exc: redis.ResponseError) -> bool:
    """Whether ``FCALL`` was answered "no such function" (nothing ran)."""
    return "function not found" in str(exc).lower()
