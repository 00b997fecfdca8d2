"""Content-addressed, deduplicated Django file storage."""

from __future__ import annotations

__version__ = "0.1.0"
