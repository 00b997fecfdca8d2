"""The Redis index and its locmem twin decide alike: the same random calls, every answer.

Hypothesis draws a sequence of ``Index`` calls over small pools of names, digests and
tokens and feeds it to a ``RedisIndex`` (a real redis-server) and a ``LocMemIndex`` side
by side; after every call the decisions (or the errors raised) and the records of every
name in the pool must be the same. Nothing expires during a run (every lifetime is an
hour): a holder's lease lapsing is drawn as a ``release_claim`` of its claim.
"""

from __future__ import annotations

import uuid
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, event, given, settings

from dedupstore.index.base import (
    TOMBSTONE_TTL,
    UNTRACKED_DELETE_LEASE,
    CommitDecision,
    DeleteDecision,
    Index,
    SaveDecision,
)
from dedupstore.index.locmem import get_locmem_index
from dedupstore.index.redis import RedisIndex
from dedupstore.testing.redis import RedisServer

TTL = 3600.0
NAMES = ["a", "b", "dir/c"]
DIGESTS = ["d1" * 32, "d2" * 32]
#: Saves and deletes get tokens of their own (the storage makes one per call): a token
#: drawn twice is the same call run again, as after a lost reply.
SAVE_TOKENS = ["s1", "s2", "s3"]
DELETE_TOKENS = ["x1", "x2"]
LEASES = DIGESTS + [f"{UNTRACKED_DELETE_LEASE}{t}:{n}" for t in DELETE_TOKENS for n in NAMES]

names = st.sampled_from(NAMES)
digests = st.sampled_from(DIGESTS)
save_tokens = st.sampled_from(SAVE_TOKENS)
delete_tokens = st.sampled_from(DELETE_TOKENS)

Call = tuple[str, dict[str, Any]]


def call(method: str, **arguments: st.SearchStrategy[Any]) -> st.SearchStrategy[Call]:
    return st.fixed_dictionaries(arguments).map(lambda drawn: (method, drawn))


CALLS: st.SearchStrategy[Call] = st.one_of(
    call(
        "begin_save",
        digest=digests,
        reuse=st.sampled_from(["content", "name", "never"]),
        name=names,
        max_length=st.sampled_from([None, 1, 100]),
        token=save_tokens,
        claim_ttl=st.just(TTL),
        overwrite=st.booleans(),
    ),
    call(
        "commit_save",
        digest=digests,
        token=save_tokens,
        name=names,
        size=st.integers(0, 3),
        replacing=st.booleans(),
        # None: the since of this token's last begin_save, as a saver passes it.
        since=st.none() | st.integers(0, 4),
        elapsed=st.sampled_from([0.0, TOMBSTONE_TTL / 2]),
    ),
    call("release_claim", digest=st.sampled_from(LEASES), token=save_tokens | delete_tokens),
    call(
        "refresh_claim",
        digest=st.sampled_from(LEASES),
        token=save_tokens | delete_tokens,
        claim_ttl=st.just(TTL),
    ),
    call("reserve_name", name=names, token=save_tokens, digest=digests),
    call("release_name", name=names, token=save_tokens),
    call("begin_replace", name=names, token=save_tokens, digest=digests),
    call("abort_replace", name=names, token=save_tokens, inner_deleted=st.booleans()),
    call("begin_delete", name=names, token=delete_tokens, claim_ttl=st.just(TTL)),
    # None: the lease of this token's last begin_delete, as a deleter passes it.
    call(
        "commit_delete",
        name=names,
        digest=st.none() | st.sampled_from(LEASES),
        token=delete_tokens,
    ),
    # Whole calls of the storage, so runs reach hits, shared names, replaces and deletes.
    call(
        "save",
        digest=digests,
        reuse=st.sampled_from(["content", "name", "never"]),
        name=names,
        token=save_tokens,
    ),
    call("replace", digest=digests, name=names, token=save_tokens),
    call("delete", name=names, token=delete_tokens),
    call("forget_content", digest=digests, name=names),
)


def answer_of(index: Index, method: str, arguments: dict[str, Any]) -> object:
    """Return what ``index`` answers, or the error it raised."""
    try:
        return getattr(index, method)(**arguments)
    except Exception as exc:  # the error is the decision being compared
        return exc


def comparable(answer: object) -> object:
    """Return ``answer`` comparable across indexes (of a wait's lifetime: only that it waits)."""
    if isinstance(answer, Exception):
        return ("raised", type(answer).__name__, answer.args)
    retry_after = getattr(answer, "retry_after", None)
    if retry_after is None:
        return answer
    # Only a wait's retry_after means anything, and it is a remaining lifetime: the
    # indexes need only agree that there is something to wait for.
    if answer.action in ("wait", "relocate"):  # type: ignore[attr-defined]
        assert retry_after > 0, answer
    fields = {k: getattr(answer, k) for k in answer.__slots__ if k != "retry_after"}  # type: ignore[attr-defined]
    return (type(answer).__name__, fields)


def summary(decision: object) -> str:
    """Name a decision briefly: its action, error type, or value."""
    if isinstance(decision, tuple) and decision[0] == "raised":
        return f"raised {decision[1]}"
    if isinstance(decision, tuple):
        return str(decision[1]["action"])
    return repr(decision)


class Runner:
    """Feed calls to both indexes; fill in what a real caller passes from earlier answers."""

    def __init__(self, redis_index: Index, locmem_index: Index) -> None:
        self.indexes = (redis_index, locmem_index)
        self.since: dict[str, int] = {}
        self.lease: dict[str, str] = {}

    def run(self, method: str, arguments: dict[str, Any]) -> None:
        """Run one call (a whole save, replace or delete: its calls in turn) on both."""
        if method == "save":
            since = self.run_one("begin_save", {**arguments, "max_length": None, "claim_ttl": TTL})
            if getattr(since, "action", None) != "claimed":
                return
            if self.run_one("reserve_name", without(arguments, "reuse")) is True:
                self.run_one("commit_save", {**without(arguments, "reuse"), "size": 1})
        elif method == "replace":
            claimed = self.run_one(
                "begin_save",
                {
                    **arguments,
                    "reuse": "never",
                    "max_length": None,
                    "claim_ttl": TTL,
                    "overwrite": True,
                },
            )
            if (
                getattr(claimed, "action", None) == "claimed"
                and self.run_one("begin_replace", arguments) == "replace"
            ):
                self.run_one("commit_save", {**arguments, "size": 2, "replacing": True})
        elif method == "delete":
            decision = self.run_one("begin_delete", {**arguments, "claim_ttl": TTL})
            if getattr(decision, "action", None) in ("delete", "unknown"):
                self.run_one("commit_delete", arguments)
        else:
            self.run_one(method, arguments)

    def run_one(self, method: str, arguments: dict[str, Any]) -> object:
        """Run one ``Index`` call on both indexes, compare answers and records; return it."""
        token = arguments.get("token", "")
        if method == "commit_save" and arguments.get("since") is None:
            arguments = {**arguments, "since": self.since.get(token, 0)}
        if method == "commit_delete" and arguments.get("digest") is None:
            arguments = {**arguments, "digest": self.lease.get(token, "")}
        redis_index, locmem_index = self.indexes
        answer = answer_of(redis_index, method, arguments)
        expected = comparable(answer)
        got = comparable(answer_of(locmem_index, method, arguments))
        assert got == expected, f"{method}({arguments})"
        assert state(locmem_index) == state(redis_index), f"after {method}({arguments})"
        # Shown by --hypothesis-show-statistics: which decisions the runs reached.
        event(f"{method}: {summary(expected)}")
        if isinstance(answer, SaveDecision) and answer.action == "claimed":
            self.since[token] = answer.since
        if isinstance(answer, CommitDecision) and answer.action in ("rewrite", "verify"):
            self.since[token] = answer.since
        if isinstance(answer, DeleteDecision) and answer.action in ("delete", "unknown"):
            self.lease[token] = answer.digest
        return answer


def without(arguments: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in arguments.items() if k != key}


def state(index: Index) -> list[object]:
    return [index.lookup(name) for name in NAMES]


@pytest.mark.slow
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(calls=st.lists(CALLS, min_size=20, max_size=60))
def test_redis_and_locmem_indexes_decide_every_call_alike(
    redis_server: RedisServer, calls: list[Call]
) -> None:
    namespace = f"equivalence-{uuid.uuid4().hex}"
    redis_index = RedisIndex(redis_server.url, namespace=namespace, display_url="redis")
    locmem_index = get_locmem_index(uuid.uuid4().hex, namespace=namespace)
    try:
        runner = Runner(redis_index, locmem_index)
        for method, arguments in calls:
            runner.run(method, arguments)
    finally:
        redis_index.close()


def test_the_comparison_tells_a_differing_decision(redis_server: RedisServer) -> None:
    """Guard the property above: a twin that decides otherwise is caught."""
    namespace = f"equivalence-{uuid.uuid4().hex}"
    redis_index = RedisIndex(redis_server.url, namespace=namespace, display_url="redis")
    locmem_index = get_locmem_index(uuid.uuid4().hex, namespace=namespace)
    arguments: dict[str, Any] = {"name": "a", "token": "x1", "claim_ttl": TTL}
    try:
        # The twin already holds a tombstone on "a": its answer differs (wait vs unknown).
        locmem_index.begin_delete(name="a", token="x2", claim_ttl=TTL)
        expected = comparable(answer_of(redis_index, "begin_delete", arguments))
        assert comparable(answer_of(locmem_index, "begin_delete", arguments)) != expected
    finally:
        redis_index.close()
