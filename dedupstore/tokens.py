"""Identities of saves and deletes in the index: unique, and cheap on the hit path."""

from __future__ import annotations

import itertools
import os
import secrets

# A random per-process prefix and a counter: unique across processes and machines (64
# random bits) without a getrandom() system call per save. A forked child draws a new
# prefix, so it never repeats its parent's tokens.
_prefix = secrets.token_hex(8)
_counter = itertools.count()


def _new_process() -> None:
    global _prefix, _counter
    _prefix, _counter = secrets.token_hex(8), itertools.count()


os.register_at_fork(after_in_child=_new_process)


def new_token() -> str:
    """Return a token no other save or delete, in any process, has had."""
    return f"{_prefix}{next(_counter):x}"


def fork_generation() -> int:
    """Return how many forks separate this process from the one that imported us first.

    Objects that hold a socket compare it to tell a forked child (which must not use its
    parent's socket) without a ``getpid()`` system call.
    """
    return _forks


_forks = 0


def _count_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)
