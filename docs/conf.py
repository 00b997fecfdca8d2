"""Sphinx configuration of the dedupstore documentation (Markdown pages through MyST)."""

from __future__ import annotations

project = "dedupstore"
author = "the dedupstore developers"
copyright = "2026, the dedupstore developers"
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
html_theme = "alabaster"
