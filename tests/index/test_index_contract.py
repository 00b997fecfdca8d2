"""One contract for every dedup index: each decision of the state machine, call by call.

``BaseIndexTests`` drives ``Index`` methods directly (no storage); ``TestRedisIndex`` runs
it against a real redis-server, ``TestLocMemIndex`` against the in-process twin (no Redis
server needed), as Django's cache tests run ``BaseCacheTests`` once per backend. The
states and transitions are described in ``docs/internals.md``.

No test waits for anything to expire: a holder whose lease lapsed is modelled by releasing
its claim (``release_claim``), which is what the index sees when a claim expires.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from dedupstore.exceptions import ClaimLost
from dedupstore.index.base import TOMBSTONE_TTL, Index, IndexStats
from dedupstore.index.locmem import get_locmem_index
from dedupstore.index.redis import RedisIndex
from dedupstore.testing.redis import RedisServer
from dedupstore.testing.redis_cluster import RedisCluster

#: Long enough that no claim, tombstone or quarantine expires during a test.
TTL = 3600.0

D1 = "d1" * 32
D2 = "d2" * 32


def claim(index: Index, digest: str, token: str, name: str, **options: object) -> int:
    """Claim ``digest`` for writing ``name`` (no reuse); return ``since``."""
    decision = index.begin_save(
        digest=digest,
        reuse=options.pop("reuse", "never"),  # type: ignore[arg-type]
        name=name,
        max_length=None,
        token=token,
        claim_ttl=TTL,
        **options,  # type: ignore[arg-type]
    )
    assert decision.action == "claimed", decision
    return decision.since


def save(index: Index, name: str, digest: str = D1, token: str | None = None) -> str:
    """Store ``name`` as a fresh save does: claim, reserve, commit; return the token."""
    token = token or uuid.uuid4().hex
    since = claim(index, digest, token, name)
    assert index.reserve_name(name=name, token=token, digest=digest)
    decision = index.commit_save(digest=digest, token=token, name=name, size=5, since=since)
    assert decision.action == "committed", decision
    return token


def hit(index: Index, name: str, digest: str = D1) -> None:
    """Count one more reference to ``name``, as a save whose content it holds does."""
    decision = index.begin_save(
        digest=digest, reuse="name", name=name, max_length=None, token="hit", claim_ttl=TTL
    )
    assert (decision.action, decision.name) == ("hit", name), decision


def delete(index: Index, name: str) -> str:
    """Delete one reference to ``name`` completely; return the decision's action."""
    token = uuid.uuid4().hex
    decision = index.begin_delete(name=name, token=token, claim_ttl=TTL)
    if decision.action in ("delete", "unknown"):
        index.commit_delete(name=name, digest=decision.digest, token=token)
    return decision.action


class BaseIndexTests:
    """The decisions every index makes alike; subclasses provide the ``index`` fixture."""

    # begin_save

    def test_begin_save_claims_content_the_index_does_not_hold(self, index: Index) -> None:
        decision = index.begin_save(
            digest=D1, reuse="content", name="a", max_length=None, token="t", claim_ttl=TTL
        )
        assert (decision.action, decision.since) == ("claimed", 0)

    def test_begin_save_hits_stored_content_and_counts_a_reference(self, index: Index) -> None:
        save(index, "a")
        decision = index.begin_save(
            digest=D1, reuse="content", name="other", max_length=None, token="t", claim_ttl=TTL
        )
        assert (decision.action, decision.name) == ("hit", "a")
        assert index.lookup("a").refs == 2  # type: ignore[union-attr]

    def test_begin_save_by_name_hits_only_a_name_holding_the_digest(self, index: Index) -> None:
        save(index, "a")
        hit = index.begin_save(
            digest=D1, reuse="name", name="a", max_length=None, token="t", claim_ttl=TTL
        )
        other = index.begin_save(
            digest=D1, reuse="name", name="b", max_length=None, token="u", claim_ttl=TTL
        )
        assert (hit.action, hit.name, other.action) == ("hit", "a", "claimed")

    def test_begin_save_without_reuse_claims_stored_content(self, index: Index) -> None:
        save(index, "a")
        assert claim(index, D1, "t", "b") == 0
        assert index.lookup("a").refs == 1  # type: ignore[union-attr]

    def test_begin_save_does_not_hit_a_name_longer_than_max_length(self, index: Index) -> None:
        save(index, "long-name")
        decision = index.begin_save(
            digest=D1, reuse="content", name="x", max_length=4, token="t", claim_ttl=TTL
        )
        assert decision.action == "claimed"

    def test_begin_save_waits_while_another_token_holds_the_claim(self, index: Index) -> None:
        claim(index, D1, "first", "a")
        decision = index.begin_save(
            digest=D1, reuse="content", name="a", max_length=None, token="second", claim_ttl=TTL
        )
        assert decision.action == "wait"
        assert 0 < decision.retry_after <= TTL

    def test_begin_save_by_the_claim_holder_claims_again(self, index: Index) -> None:
        claim(index, D1, "first", "a")
        assert claim(index, D1, "first", "a") == 0

    def test_begin_save_finishes_a_dead_deletion_of_the_name_and_quarantines_it(
        self, index: Index
    ) -> None:
        save(index, "a")
        deleter = index.begin_delete(name="a", token="deleter", claim_ttl=TTL)
        index.release_claim(digest=deleter.digest, token="deleter")  # the deleter died
        since = claim(index, D2, "saver", "a")
        assert index.lookup("a") is None
        assert since == 1  # the deletion was finished and numbered
        assert not index.reserve_name(name="a", token="saver", digest=D2)

    def test_begin_save_with_overwrite_leaves_a_dead_deletion_to_begin_replace(
        self, index: Index
    ) -> None:
        save(index, "a")
        deleter = index.begin_delete(name="a", token="deleter", claim_ttl=TTL)
        index.release_claim(digest=deleter.digest, token="deleter")
        claim(index, D2, "saver", "a", overwrite=True)
        assert index.lookup("a").state == "deleting"  # type: ignore[union-attr]

    # commit_save

    def test_commit_save_records_the_name_and_ends_claim_and_reservation(
        self, index: Index
    ) -> None:
        save(index, "a", token="t")
        record = index.lookup("a")
        assert (record.digest, record.refs, record.state, record.size) == (D1, 1, "live", 5)  # type: ignore[union-attr]
        assert claim(index, D1, "other", "b") == 0  # the claim was dropped
        assert not index.reserve_name(name="a", token="other", digest=D1)

    def test_commit_save_of_the_same_name_again_counts_another_reference(
        self, index: Index
    ) -> None:
        save(index, "a")
        hit(index, "a")
        assert index.lookup("a").refs == 2  # type: ignore[union-attr]

    def test_commit_save_again_with_the_same_token_answers_from_its_receipt(
        self, index: Index
    ) -> None:
        save(index, "a", token="t")
        again = index.commit_save(digest=D1, token="t", name="a", size=5)
        assert again.action == "committed"
        assert index.lookup("a").refs == 1  # type: ignore[union-attr]

    def test_commit_save_waits_for_a_live_replacer_of_the_name(self, index: Index) -> None:
        save(index, "a")
        claim(index, D2, "replacer", "a", overwrite=True)
        assert index.begin_replace(name="a", token="replacer", digest=D2) == "replace"
        since = claim(index, D1, "saver", "a")
        decision = index.commit_save(digest=D1, token="saver", name="a", size=5, since=since)
        assert decision.action == "wait" and decision.retry_after > 0

    def test_commit_save_waits_for_a_tracked_delete_under_way(self, index: Index) -> None:
        save(index, "a")
        assert index.begin_delete(name="a", token="deleter", claim_ttl=TTL).action == "delete"
        since = claim(index, D2, "saver", "a")
        decision = index.commit_save(digest=D2, token="saver", name="a", size=5, since=since)
        assert decision.action == "wait" and decision.retry_after > 0

    def test_commit_save_waits_for_an_untracked_delete_under_way(self, index: Index) -> None:
        since = claim(index, D1, "saver", "a")
        assert index.begin_delete(name="a", token="deleter", claim_ttl=TTL).action == "unknown"
        decision = index.commit_save(digest=D1, token="saver", name="a", size=5, since=since)
        assert decision.action == "wait" and decision.retry_after > 0
        assert index.lookup("a") is None

    def test_commit_save_rewrites_after_an_untracked_delete_finished_since_begin_save(
        self, index: Index
    ) -> None:
        since = claim(index, D1, "saver", "a")
        assert delete(index, "a") == "unknown"
        decision = index.commit_save(digest=D1, token="saver", name="a", size=5, since=since)
        assert (decision.action, decision.since) == ("rewrite", 1)
        again = index.commit_save(digest=D1, token="saver", name="a", size=5, since=1)
        assert again.action == "committed"

    def test_commit_save_rewrites_and_quarantines_after_a_dead_untracked_deleter(
        self, index: Index
    ) -> None:
        since = claim(index, D1, "saver", "a")
        lease = index.begin_delete(name="a", token="deleter", claim_ttl=TTL).digest
        index.release_claim(digest=lease, token="deleter")
        decision = index.commit_save(digest=D1, token="saver", name="a", size=5, since=since)
        assert (decision.action, decision.since) == ("rewrite", 1)
        again = index.commit_save(digest=D1, token="saver", name="a", size=5, since=1)
        assert again.action == "relocate" and again.retry_after > 0

    def test_commit_save_rewrites_after_a_dead_tracked_deleter(self, index: Index) -> None:
        save(index, "a")
        index.begin_delete(name="a", token="deleter", claim_ttl=TTL)
        since = claim(index, D2, "saver", "b")
        index.release_claim(digest=D1, token="deleter")
        decision = index.commit_save(digest=D2, token="saver", name="a", size=5, since=since)
        assert (decision.action, decision.since) == ("rewrite", 1)
        assert index.lookup("a") is None

    def test_commit_save_asks_to_verify_after_a_write_as_long_as_half_a_tombstone(
        self, index: Index
    ) -> None:
        since = claim(index, D1, "saver", "a")
        decision = index.commit_save(
            digest=D1, token="saver", name="a", size=5, since=since, elapsed=TOMBSTONE_TTL / 2
        )
        assert (decision.action, decision.since) == ("verify", 0)
        assert index.lookup("a") is None

    def test_commit_save_relocates_from_a_quarantined_name(self, index: Index) -> None:
        quarantine(index, "a")
        since = claim(index, D2, "saver", "b")
        decision = index.commit_save(digest=D2, token="saver", name="a", size=5, since=since)
        assert decision.action == "relocate" and decision.retry_after > 0

    def test_commit_save_loses_a_name_another_save_reserved(self, index: Index) -> None:
        claim(index, D1, "first", "a")
        assert index.reserve_name(name="a", token="first", digest=D1)
        with pytest.raises(ClaimLost):
            index.commit_save(digest=D2, token="second", name="a", size=5)
        assert index.lookup("a") is None

    def test_commit_save_of_a_replace_counts_one_reference(self, index: Index) -> None:
        save(index, "a")
        claim(index, D2, "replacer", "a", overwrite=True)
        assert index.begin_replace(name="a", token="replacer", digest=D2) == "replace"
        decision = index.commit_save(digest=D2, token="replacer", name="a", size=7, replacing=True)
        record = index.lookup("a")
        assert decision.action == "committed"
        assert (record.digest, record.refs, record.state, record.size) == (D2, 1, "live", 7)  # type: ignore[union-attr]

    def test_commit_save_of_a_replace_taken_over_raises_claim_lost(self, index: Index) -> None:
        save(index, "a")
        claim(index, D2, "replacer", "a", overwrite=True)
        index.begin_replace(name="a", token="replacer", digest=D2)
        index.release_claim(digest=D2, token="replacer")  # the replacer stalled
        assert index.begin_delete(name="a", token="deleter", claim_ttl=TTL).action == "delete"
        with pytest.raises(ClaimLost):
            index.commit_save(digest=D2, token="replacer", name="a", size=5, replacing=True)

    # reservations

    def test_reserve_name_holds_a_free_name_for_one_token(self, index: Index) -> None:
        claim(index, D1, "first", "a")
        assert index.reserve_name(name="a", token="first", digest=D1)
        assert index.reserve_name(name="a", token="first", digest=D1)
        assert not index.reserve_name(name="a", token="second", digest=D2)
        index.release_name(name="a", token="second")  # not theirs: no effect
        assert not index.reserve_name(name="a", token="second", digest=D2)
        index.release_name(name="a", token="first")
        assert index.reserve_name(name="a", token="second", digest=D2)

    def test_reserve_name_refuses_a_name_with_a_record(self, index: Index) -> None:
        save(index, "a")
        assert not index.reserve_name(name="a", token="t", digest=D1)

    def test_reserve_name_never_takes_over_a_lapsed_reservation(self, index: Index) -> None:
        claim(index, D1, "first", "a")
        assert index.reserve_name(name="a", token="first", digest=D1)
        index.release_claim(digest=D1, token="first")  # its holder may still be writing
        assert not index.reserve_name(name="a", token="second", digest=D2)
        assert not index.reserve_name(name="a", token="second", digest=D2)
        decision = index.commit_save(digest=D1, token="first", name="a", size=5)
        assert decision.action == "committed"  # its holder may still commit

    # quarantine

    def test_a_quarantined_name_cannot_be_reserved(self, index: Index) -> None:
        quarantine(index, "a")
        assert index.lookup("a") is None
        assert not index.reserve_name(name="a", token="t", digest=D1)

    # begin_replace and abort_replace

    def test_begin_replace_of_a_name_without_a_record_is_absent(self, index: Index) -> None:
        assert index.begin_replace(name="a", token="t", digest=D1) == "absent"

    def test_begin_replace_of_a_name_with_other_references_is_shared(self, index: Index) -> None:
        save(index, "a")
        hit(index, "a")
        assert index.begin_replace(name="a", token="t", digest=D2) == "shared"

    def test_begin_replace_takes_the_name_out_of_content_reuse(self, index: Index) -> None:
        save(index, "a")
        claim(index, D2, "replacer", "a", overwrite=True)
        assert index.begin_replace(name="a", token="replacer", digest=D2) == "replace"
        assert index.lookup("a").state == "replacing"  # type: ignore[union-attr]
        decision = index.begin_save(
            digest=D1, reuse="content", name="b", max_length=None, token="u", claim_ttl=TTL
        )
        assert decision.action == "claimed"

    def test_begin_replace_waits_for_a_live_replacer(self, index: Index) -> None:
        save(index, "a")
        claim(index, D2, "replacer", "a", overwrite=True)
        index.begin_replace(name="a", token="replacer", digest=D2)
        assert index.begin_replace(name="a", token="other", digest=D1) == "wait"

    def test_begin_replace_quarantines_the_name_of_a_dead_replacer(self, index: Index) -> None:
        save(index, "a")
        claim(index, D2, "replacer", "a", overwrite=True)
        index.begin_replace(name="a", token="replacer", digest=D2)
        index.release_claim(digest=D2, token="replacer")
        assert index.begin_replace(name="a", token="other", digest=D1) == "quarantined"
        # The quarantine itself now answers, whoever asks.
        assert index.begin_replace(name="a", token="replacer", digest=D2) == "quarantined"

    def test_abort_replace_gives_the_name_back_to_content_reuse(self, index: Index) -> None:
        save(index, "a")
        claim(index, D2, "replacer", "a", overwrite=True)
        index.begin_replace(name="a", token="replacer", digest=D2)
        index.abort_replace(name="a", token="replacer", inner_deleted=False)
        assert index.lookup("a").state == "live"  # type: ignore[union-attr]
        decision = index.begin_save(
            digest=D1, reuse="content", name="b", max_length=None, token="u", claim_ttl=TTL
        )
        assert (decision.action, decision.name) == ("hit", "a")

    def test_abort_replace_after_the_inner_delete_forgets_the_name(self, index: Index) -> None:
        save(index, "a")
        claim(index, D2, "replacer", "a", overwrite=True)
        index.begin_replace(name="a", token="replacer", digest=D2)
        index.abort_replace(name="a", token="other", inner_deleted=True)  # not theirs
        assert index.lookup("a") is not None
        index.abort_replace(name="a", token="replacer", inner_deleted=True)
        assert index.lookup("a") is None

    # begin_delete and commit_delete

    def test_begin_delete_keeps_an_object_other_references_share(self, index: Index) -> None:
        save(index, "a")
        hit(index, "a")
        decision = index.begin_delete(name="a", token="t", claim_ttl=TTL)
        assert (decision.action, decision.digest, decision.refs) == ("kept", D1, 1)

    def test_begin_delete_of_the_last_reference_deletes(self, index: Index) -> None:
        save(index, "a")
        decision = index.begin_delete(name="a", token="t", claim_ttl=TTL)
        assert (decision.action, decision.digest) == ("delete", D1)
        record = index.lookup("a")
        assert (record.state, record.refs) == ("deleting", 0)  # type: ignore[union-attr]
        index.commit_delete(name="a", digest=D1, token="t")
        assert index.lookup("a") is None

    def test_begin_delete_of_unreferenced_only_keeps_a_record_a_reference_came_back_to(
        self, index: Index
    ) -> None:
        save(index, "a")
        index.set_references("a", 0, grace=0)
        hit(index, "a")  # after gc looked: refs 1 again
        decision = index.begin_delete(name="a", token="t", claim_ttl=TTL, unreferenced_only=True)
        assert (decision.action, decision.refs) == ("kept", 1)
        record = index.lookup("a")
        assert (record.state, record.refs) == ("live", 1)  # type: ignore[union-attr]
        untracked = index.begin_delete(name="b", token="t", claim_ttl=TTL, unreferenced_only=True)
        assert untracked.action == "kept"  # no tombstone, nothing claimed
        assert index.begin_delete(name="b", token="u", claim_ttl=TTL).action == "unknown"

    def test_begin_delete_of_unreferenced_only_claims_a_record_with_no_reference(
        self, index: Index
    ) -> None:
        save(index, "a")
        index.set_references("a", 0, grace=0)
        decision = index.begin_delete(name="a", token="t", claim_ttl=TTL, unreferenced_only=True)
        assert (decision.action, decision.digest) == ("delete", D1)
        assert index.lookup("a").state == "deleting"  # type: ignore[union-attr]

    def test_begin_delete_of_an_untracked_name_holds_a_tombstone(self, index: Index) -> None:
        decision = index.begin_delete(name="a", token="t", claim_ttl=TTL)
        assert (decision.action, decision.digest) == ("unknown", "untracked-delete:t:a")
        assert index.begin_delete(name="a", token="u", claim_ttl=TTL).action == "wait"

    def test_begin_delete_waits_while_a_save_of_the_content_holds_its_claim(
        self, index: Index
    ) -> None:
        save(index, "a")
        claim(index, D1, "saver", "b")
        decision = index.begin_delete(name="a", token="t", claim_ttl=TTL)
        assert decision.action == "wait" and decision.retry_after > 0
        assert index.lookup("a").refs == 1  # type: ignore[union-attr]

    def test_begin_delete_waits_for_a_live_replacer(self, index: Index) -> None:
        save(index, "a")
        claim(index, D2, "replacer", "a", overwrite=True)
        index.begin_replace(name="a", token="replacer", digest=D2)
        assert index.begin_delete(name="a", token="t", claim_ttl=TTL).action == "wait"

    def test_begin_delete_takes_over_a_dead_replacer_and_quarantines(self, index: Index) -> None:
        save(index, "a")
        claim(index, D2, "replacer", "a", overwrite=True)
        index.begin_replace(name="a", token="replacer", digest=D2)
        index.release_claim(digest=D2, token="replacer")
        assert index.begin_delete(name="a", token="t", claim_ttl=TTL).action == "delete"
        index.commit_delete(name="a", digest=D1, token="t")
        assert not index.reserve_name(name="a", token="u", digest=D1)

    def test_begin_delete_again_with_the_same_token_answers_from_its_receipt(
        self, index: Index
    ) -> None:
        save(index, "a")
        hit(index, "a")
        first = index.begin_delete(name="a", token="t", claim_ttl=TTL)
        again = index.begin_delete(name="a", token="t", claim_ttl=TTL)
        assert (again.action, again.refs) == (first.action, first.refs) == ("kept", 1)
        assert index.lookup("a").refs == 1  # type: ignore[union-attr]

    def test_begin_delete_again_while_its_lease_is_held_deletes_again(self, index: Index) -> None:
        save(index, "a")
        index.begin_delete(name="a", token="t", claim_ttl=TTL)
        index.release_claim(digest=D1, token="t")  # lapsed, but nobody took it over
        again = index.begin_delete(name="a", token="t", claim_ttl=TTL)
        assert (again.action, again.digest) == ("delete", D1)
        assert index.refresh_claim(digest=D1, token="t", claim_ttl=TTL)  # renewed

    def test_begin_delete_again_after_a_takeover_is_done(self, index: Index) -> None:
        save(index, "a")
        index.begin_delete(name="a", token="t", claim_ttl=TTL)
        index.release_claim(digest=D1, token="t")
        claim(index, D2, "saver", "a")  # finishes the apparently dead deletion
        again = index.begin_delete(name="a", token="t", claim_ttl=TTL)
        assert (again.action, again.digest) == ("done", D1)

    def test_commit_delete_numbers_the_delete_after_earlier_saves(self, index: Index) -> None:
        save(index, "a")
        since = claim(index, D2, "saver", "b")
        assert delete(index, "a") == "delete"
        assert claim(index, D2, "saver", "b") == since + 1

    # claims, content map, marks

    def test_refresh_claim_succeeds_only_for_its_holder(self, index: Index) -> None:
        claim(index, D1, "t", "a")
        assert index.refresh_claim(digest=D1, token="t", claim_ttl=TTL)
        assert not index.refresh_claim(digest=D1, token="u", claim_ttl=TTL)
        index.release_claim(digest=D1, token="u")  # not theirs: no effect
        assert index.refresh_claim(digest=D1, token="t", claim_ttl=TTL)
        index.release_claim(digest=D1, token="t")
        assert not index.refresh_claim(digest=D1, token="t", claim_ttl=TTL)

    def test_forget_content_stops_reuse_and_keeps_the_references(self, index: Index) -> None:
        save(index, "a")
        index.forget_content(digest=D1, name="other")  # names another: no effect
        index.forget_content(digest=D1, name="a")
        decision = index.begin_save(
            digest=D1, reuse="content", name="b", max_length=None, token="t", claim_ttl=TTL
        )
        assert decision.action == "claimed"
        assert index.lookup("a").refs == 1  # type: ignore[union-attr]

    def test_lookup_of_an_unknown_name_is_none(self, index: Index) -> None:
        assert index.lookup("nothing") is None

    def test_cancel_delete_gives_a_tracked_record_back_its_references(self, index: Index) -> None:
        save(index, "a")
        decision = index.begin_delete(name="a", token="guarded", claim_ttl=TTL)
        assert decision.action == "delete"
        assert index.cancel_delete(
            name="a", token="guarded", digest=decision.digest, refs=2, size=0, lease=decision.digest
        )
        record = index.lookup("a")
        assert record is not None and (record.state, record.refs) == ("live", 2)
        hit(index, "a")  # content reuse finds it again
        assert index.lookup("a").refs == 3  # type: ignore[union-attr]

    def test_cancel_delete_records_an_untracked_name_it_kept(self, index: Index) -> None:
        decision = index.begin_delete(name="old", token="guarded", claim_ttl=TTL)
        assert decision.action == "unknown"
        assert index.cancel_delete(
            name="old", token="guarded", digest=D1, refs=1, size=5, lease=decision.digest
        )
        record = index.lookup("old")
        assert record is not None and (record.digest, record.refs, record.state) == (D1, 1, "live")

    def test_cancel_delete_by_a_token_that_lost_the_name_changes_nothing(
        self, index: Index
    ) -> None:
        save(index, "a")
        decision = index.begin_delete(name="a", token="guarded", claim_ttl=TTL)
        assert not index.cancel_delete(
            name="a",
            token="someone-else",
            digest=decision.digest,
            refs=5,
            size=0,
            lease=decision.digest,
        )
        record = index.lookup("a")
        assert record is not None and record.state == "deleting"

    # maintenance: counters, scans, counts set from the rows

    def test_the_counters_follow_saves_hits_and_deletes(self, index: Index) -> None:
        assert index.stats() == IndexStats()
        save(index, "a")  # 5 bytes
        hit(index, "a")
        save(index, "b", digest=D2)
        assert index.stats() == IndexStats(
            objects=2, references=3, physical_bytes=10, logical_bytes=15
        )
        assert delete(index, "a") == "kept"
        assert delete(index, "b") == "delete"
        assert index.stats() == IndexStats(
            objects=1, references=1, physical_bytes=5, logical_bytes=5
        )

    def test_a_content_hit_is_counted_on_the_record_the_content_map_names(
        self, index: Index
    ) -> None:
        save(index, "a")
        decision = index.begin_save(
            digest=D1, reuse="content", name="other", max_length=None, token="t", claim_ttl=TTL
        )
        assert (decision.action, decision.name) == ("hit", "a")
        assert index.stats() == IndexStats(
            objects=1, references=2, physical_bytes=5, logical_bytes=10
        )

    def test_a_delete_the_guard_cancels_leaves_the_counters_as_they_were(
        self, index: Index
    ) -> None:
        save(index, "a")
        decision = index.begin_delete(name="a", token="guarded", claim_ttl=TTL)
        assert decision.action == "delete"
        assert index.stats().references == 0
        assert index.cancel_delete(
            name="a", token="guarded", digest=decision.digest, refs=2, size=5, lease=D1
        )
        assert index.stats() == IndexStats(
            objects=1, references=2, physical_bytes=5, logical_bytes=10
        )

    def test_set_stats_overwrites_the_counters(self, index: Index) -> None:
        save(index, "a")
        index.set_stats(IndexStats(objects=7, references=8, physical_bytes=9, logical_bytes=10))
        assert index.stats() == IndexStats(7, 8, 9, 10)

    def test_scan_records_yields_every_record_once_with_its_last_change(self, index: Index) -> None:
        before = time.time()
        names = [f"file-{number}" for number in range(25)]
        for name in names:
            save(index, name)
        scanned = list(index.scan_records(batch_size=7))
        assert sorted(item.record.name for item in scanned) == sorted(names)
        assert all(item.record.refs == 1 and item.record.size == 5 for item in scanned)
        assert all(item.touched >= before - 1 for item in scanned)

    def test_scan_records_of_one_namespace_leaves_out_the_others(self, index: Index) -> None:
        save(index, "mine")
        assert [item.record.name for item in index.scan_records()] == ["mine"]

    def test_lookup_many_reads_every_record_of_a_batch_in_order(self, index: Index) -> None:
        save(index, "a")
        hit(index, "a")
        save(index, "b", digest=D2)
        records = index.lookup_many(["b", "unknown", "a"])
        assert [(r.name, r.digest, r.refs) if r else None for r in records] == [
            ("b", D2, 1),
            None,
            ("a", D1, 2),
        ]
        assert index.lookup_many([]) == []

    def test_compare_counts_answers_only_what_differs_from_the_rows(self, index: Index) -> None:
        save(index, "agrees")
        save(index, "shared", digest=D2)
        hit(index, "shared", digest=D2)
        save(index, "counts-high", digest="d3" * 32)
        save(index, "deleting", digest="d4" * 32)
        assert index.begin_delete(name="deleting", token="d", claim_ttl=TTL).action == "delete"
        names = ["agrees", "shared", "unknown", "counts-high", "deleting"]

        check = index.compare_counts(names, [1, 2, 1, 0, 1], shared_from=2)

        assert check.matched == 4
        deleting = index.lookup("deleting")
        assert deleting is not None
        assert check.differences == [
            (2, None, 0, 0),
            (3, "live", 1, 5),
            (4, deleting.state, deleting.refs, 5),
        ]
        assert check.shared == [(1, 2, 5)]
        assert index.compare_counts(names, [1, 2, 1, 0, 1], shared_from=3).shared == []

    def test_compare_counts_reads_every_kind_of_record_as_lookup_does(self, index: Index) -> None:
        # Records the packed layout encodes differently: a digest that is not 64 hex
        # digits, a name longer than a listpack value, a non-ASCII name, no references
        # left, many references, a record being replaced (a holder beside it).
        assert index.add_record(name="scoped", digest="scope:" + D1, size=0, refs=1)
        assert index.add_record(name="n" * 200, digest=D2, size=2**33, refs=70_000)
        assert index.add_record(name="Größe/é.txt", digest="e1" * 32, size=7, refs=0)
        save(index, "replacing", digest="e2" * 32)
        assert index.begin_replace(name="replacing", token="r", digest=D1) == "replace"
        names = ["scoped", "n" * 200, "Größe/é.txt", "replacing"]
        records = index.lookup_many(names)
        assert all(records) and records[3] is not None and records[3].state != "live"

        check = index.compare_counts(names, [5, 5, 5, 5], shared_from=2)

        assert check.matched == 4
        assert check.differences == [
            (position, record.state, record.refs, record.size)
            for position, record in enumerate(records)
            if record is not None
        ]
        assert check.shared == [(1, 70_000, 2**33)]
        agreeing = [record.refs if record else 0 for record in records]
        # A record that is not live is always a difference.
        assert index.compare_counts(names, agreeing).differences == [
            (3, records[3].state, records[3].refs, 5)
        ]

    def test_compare_counts_sums_the_records_it_met_as_the_counters_do(self, index: Index) -> None:
        save(index, "a")
        hit(index, "a")
        save(index, "deleting", digest=D2)
        assert index.begin_delete(name="deleting", token="d", claim_ttl=TTL).action == "delete"
        # Beyond what a double holds exactly once multiplied: 9,000 x (2^40 + 1) bytes.
        assert index.add_record(name="huge", digest="d3" * 32, size=2**40 + 1, refs=9000)
        names = ["a", "deleting", "huge", "unknown"]
        scanned = [item.record for item in index.scan_records()]
        expected = IndexStats(
            len(scanned),
            sum(record.refs for record in scanned),
            sum(record.size for record in scanned),
            sum(record.refs * record.size for record in scanned),
        )

        assert index.compare_counts(names, [2, 0, 9000, 0]).sums == expected
        assert index.compare_counts([], []).sums == IndexStats()

    def test_count_records_counts_every_record_once(self, index: Index) -> None:
        assert index.count_records() == 0
        for number in range(25):
            save(index, f"file-{number}")
        assert index.count_records() == 25

    def test_content_names_name_what_content_reuse_hands_out(self, index: Index) -> None:
        save(index, "a")
        assert index.content_names([D2, D1]) == [None, "a"]
        assert index.content_names([]) == []

    def test_set_references_raises_a_count_at_once(self, index: Index) -> None:
        save(index, "a")
        assert index.set_references("a", 3, grace=TTL) == "raised"
        record = index.lookup("a")
        assert record is not None and record.refs == 3
        assert index.stats().references == 3

    def test_set_references_lowers_a_count_only_after_the_grace(self, index: Index) -> None:
        save(index, "a")
        hit(index, "a")
        assert index.set_references("a", 0, grace=TTL) == "recent"
        record = index.lookup("a")
        assert record is not None and record.refs == 2
        assert index.set_references("a", 0, grace=0.0) == "lowered"
        record = index.lookup("a")
        assert record is not None and (record.refs, record.state) == (0, "live")
        assert index.stats().references == 0

    def test_set_references_leaves_a_record_under_way_and_an_absent_one(self, index: Index) -> None:
        save(index, "a")
        assert index.begin_delete(name="a", token="deleter", claim_ttl=TTL).action == "delete"
        assert index.set_references("a", 2, grace=0.0) == "busy"
        assert index.set_references("nobody", 2, grace=0.0) == "absent"
        assert index.set_references("a", 0, grace=0.0) == "busy"

    def test_add_record_records_an_untracked_name_for_content_reuse(self, index: Index) -> None:
        assert index.add_record(name="old", digest=D1, size=4, refs=2)
        record = index.lookup("old")
        assert record is not None and (record.digest, record.refs, record.state) == (D1, 2, "live")
        decision = index.begin_save(
            digest=D1, reuse="content", name="new", max_length=None, token="t", claim_ttl=TTL
        )
        assert (decision.action, decision.name) == ("hit", "old")
        assert index.stats() == IndexStats(
            objects=1, references=3, physical_bytes=4, logical_bytes=12
        )

    def test_add_record_refuses_a_name_that_is_known_or_being_saved(self, index: Index) -> None:
        save(index, "known")
        assert not index.add_record(name="known", digest=D2, size=4, refs=1)
        claim(index, D2, "writer", "reserved")
        assert index.reserve_name(name="reserved", token="writer", digest=D2)
        assert not index.add_record(name="reserved", digest=D2, size=4, refs=1)
        record = index.lookup("known")
        assert record is not None and record.digest == D1
        assert index.lookup("reserved") is None

    def test_add_records_records_each_new_name_and_refuses_the_known_ones(
        self, index: Index
    ) -> None:
        save(index, "known")
        replies = index.add_records(
            [("old-a", D2, 4, 2), ("known", D2, 4, 1), ("old-b", "d3" * 32, 6, 1)]
        )
        assert replies == [True, False, True]
        records = index.lookup_many(["old-a", "known", "old-b"])
        assert [(r.digest, r.refs, r.size) if r else None for r in records] == [
            (D2, 2, 4),
            (D1, 1, 5),
            ("d3" * 32, 1, 6),
        ]
        assert index.stats() == IndexStats(
            objects=3, references=4, physical_bytes=15, logical_bytes=19
        )
        assert index.add_records([]) == []

    def test_add_records_in_one_batch_behaves_as_add_record_one_by_one(self, index: Index) -> None:
        before = time.time()
        save(index, "deleting", digest="e1" * 32)
        assert index.begin_delete(name="deleting", token="d", claim_ttl=TTL).action == "delete"
        claim(index, "e2" * 32, "writer", "reserved")
        assert index.reserve_name(name="reserved", token="writer", digest="e2" * 32)
        many = [(f"bulk/{number}", f"{number:064x}", number, 1) for number in range(700)]
        batch = [
            ("twice", D1, 3, 2),
            ("twice", D2, 4, 1),  # the name is known by then
            ("deleting", D2, 4, 1),
            ("reserved", D2, 4, 1),
            ("same-content", D1, 3, 1),  # content reuse keeps handing out "twice"
            ("Größe/" + "n" * 100, D2, 2**40 + 1, 9000),
            *many,
        ]

        replies = index.add_records(batch)

        assert replies[:6] == [True, False, False, False, True, True]
        assert all(replies[6:])
        assert index.count_records() == 1 + 3 + len(many)  # "deleting" and three new
        twice = index.lookup("twice")
        assert twice is not None and (twice.digest, twice.refs, twice.size) == (D1, 2, 3)
        assert index.content_names([D1, D2]) == ["twice", "Größe/" + "n" * 100]
        assert index.lookup("reserved") is None
        scanned = [item for item in index.scan_records() if item.record.name != "deleting"]
        assert all(item.touched >= before - 1 for item in scanned)
        # The counters are the sum over the records, as after a recount.
        records = [item.record for item in index.scan_records()]
        assert index.stats() == IndexStats(
            len(records),
            sum(record.refs for record in records),
            sum(record.size for record in records),
            sum(record.refs * record.size for record in records),
        )

    def test_the_initialisation_mark_stays_once_set(self, index: Index) -> None:
        assert not index.is_initialised()
        index.mark_initialised()
        index.ping()
        assert index.is_initialised()


def quarantine(index: Index, name: str) -> None:
    """Put ``name`` in quarantine: a delete takes over its replacer, which died unseen."""
    save(index, name)
    claim(index, D2, "dead-replacer", name, overwrite=True)
    assert index.begin_replace(name=name, token="dead-replacer", digest=D2) == "replace"
    index.release_claim(digest=D2, token="dead-replacer")
    assert delete(index, name) == "delete"


class TestRedisIndex(BaseIndexTests):
    """The contract against a real redis-server."""

    @pytest.fixture
    def index(self, redis_server: RedisServer) -> Iterator[Index]:
        index = RedisIndex(
            redis_server.url,
            namespace=f"contract-{uuid.uuid4().hex}",
            display_url=redis_server.url,
        )
        yield index
        index.close()


@pytest.mark.slow
class TestRedisClusterIndex(BaseIndexTests):
    """The contract against a real Redis Cluster: each script runs on its namespace's node."""

    @pytest.fixture
    def index(self, redis_cluster: RedisCluster) -> Iterator[Index]:
        index = RedisIndex(
            redis_cluster.url,
            namespace=f"contract-{uuid.uuid4().hex}",
            display_url=redis_cluster.url,
        )
        yield index
        index.close()


class TestLocMemIndex(BaseIndexTests):
    """The contract against the in-process twin: no Redis server."""

    @pytest.fixture
    def index(self) -> Index:
        return get_locmem_index(uuid.uuid4().hex, namespace="contract")
