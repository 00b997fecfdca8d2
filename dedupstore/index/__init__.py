"""The dedup index: its interface, its decisions, and opening one from its URL."""

from dedupstore.index.base import (
    CommitDecision,
    DeleteDecision,
    Index,
    ObjectRecord,
    ReplaceDecision,
    SaveDecision,
)
from dedupstore.index.connect import REDIS_SCHEMES, mask_url, open_index, validate_index_url

__all__ = [
    "REDIS_SCHEMES",
    "CommitDecision",
    "DeleteDecision",
    "Index",
    "ObjectRecord",
    "ReplaceDecision",
    "SaveDecision",
    "mask_url",
    "open_index",
    "validate_index_url",
]
