"""Every option of every shipped storage is declared once and documented with its setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from dedupstore.backends.appwrite.options import APPWRITE_OPTIONS
from dedupstore.backends.ipfs.options import IPFS_STORAGE_OPTIONS
from dedupstore.options import DEDUP_OPTIONS, OptionTable

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize(
    ("table", "page"),
    [
        (DEDUP_OPTIONS, "settings.md"),
        (APPWRITE_OPTIONS, "appwrite.md"),
        (IPFS_STORAGE_OPTIONS, "ipfs.md"),
    ],
)
def test_each_option_has_a_table_row_naming_its_setting(table: OptionTable, page: str) -> None:
    rows = [line for line in (DOCS / page).read_text().splitlines() if line.startswith("| `")]
    for option in table:
        row = next((line for line in rows if line.startswith(f"| `{option.name}` |")), None)
        assert row is not None, f"docs/{page} has no row for {option.name!r}"
        # index_wait_replicas's setting is read by the index itself (the URL's option beats it).
        setting = option.settings[0] if option.settings else f"DEDUPSTORE_{option.name.upper()}"
        assert f"`{setting}`" in row, f"docs/{page}: {option.name!r} row names no {setting}"
