"""A stateful property test: random saves, deletes and reads against a plain model."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import hypothesis.strategies as st
import pytest
from django.core.files.base import ContentFile
from hypothesis import HealthCheck, settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from dedupstore import DedupStorage

CONTENTS = [b"alpha", b"beta", b"gamma", b"delta" * 1000]
NAMES = ["a.txt", "b.txt", "dir/a.txt", "dir/c.bin"]


def make_machine(index_url: str, reuse: str, overwrite: bool) -> type[RuleBasedStateMachine]:
    class DedupMachine(RuleBasedStateMachine):
        """The model: every reference returned by save() and not yet deleted."""

        references = Bundle("references")

        def __init__(self) -> None:
            super().__init__()
            self.location = tempfile.mkdtemp(prefix="dedupstore-stateful-")
            self.storage = DedupStorage(
                inner={
                    "BACKEND": "django.core.files.storage.FileSystemStorage",
                    "OPTIONS": {"location": self.location},
                },
                index=index_url,
                namespace=f"stateful-{uuid.uuid4().hex}",
                reuse=reuse,
                overwrite=overwrite,
            )
            self.live: dict[int, tuple[str, bytes]] = {}
            self.counter = 0

        @rule(target=references, name=st.sampled_from(NAMES), content=st.sampled_from(CONTENTS))
        def save(self, name: str, content: bytes) -> int:
            stored = self.storage.save(name, ContentFile(content))
            if overwrite:
                # Overwriting a name changes what every holder of that name reads.
                for ref, (held, _old) in list(self.live.items()):
                    if held == stored:
                        self.live[ref] = (held, content)
            self.counter += 1
            self.live[self.counter] = (stored, content)
            return self.counter

        @rule(ref=consumes(references))
        def delete(self, ref: int) -> None:
            if ref not in self.live:
                return  # overwrite=True: a holder of a name another holder deleted
            name, _content = self.live.pop(ref)
            self.storage.delete(name)
            if overwrite:
                # A replaced name keeps one reference for all holders (Django semantics).
                for other, (held, _c) in list(self.live.items()):
                    if held == name and not self.storage.exists(name):
                        del self.live[other]

        @rule(ref=references)
        def read(self, ref: int) -> None:
            if ref not in self.live:
                return
            name, content = self.live[ref]
            with self.storage.open(name) as handle:
                assert handle.read() == content

        @invariant()
        def every_live_reference_reads_its_content(self) -> None:
            for name, content in self.live.values():
                with self.storage.open(name) as handle:
                    assert handle.read() == content, name

        @invariant()
        def counts_match_the_model(self) -> None:
            if overwrite:
                return
            expected: dict[str, int] = {}
            for name, _content in self.live.values():
                expected[name] = expected.get(name, 0) + 1
            for name, count in expected.items():
                assert self.storage.references(name) == count, name

        @invariant()
        def nothing_is_kept_without_a_reference(self) -> None:
            held = {name for name, _c in self.live.values()}
            root = Path(self.location)
            stored = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
            assert stored == held

    return DedupMachine


@pytest.mark.slow
@pytest.mark.parametrize(
    ("reuse", "overwrite"),
    [("content", False), ("name", False), ("never", False), ("content", True)],
)
@pytest.mark.parametrize("index_kind", ["redis", "locmem"])
def test_random_sequences_match_the_model(
    redis_url: str, index_kind: str, reuse: str, overwrite: bool
) -> None:
    index_url = redis_url if index_kind == "redis" else f"locmem://{uuid.uuid4().hex}"
    machine = make_machine(index_url, reuse, overwrite)
    machine.TestCase.settings = settings(
        max_examples=40,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine.TestCase().runTest()
