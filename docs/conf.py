"""Sphinx configuration of the dedupstore documentation (Markdown pages through MyST)."""

from __future__ import annotations

import re
from pathlib import Path

project = "dedupstore"
author = "the dedupstore developers"
copyright = "2026, the dedupstore developers"
# dedupstore.__version__ is the one version source: read here, not imported (no Django set-up).
_init = (Path(__file__).resolve().parents[1] / "dedupstore" / "__init__.py").read_text()
_version = re.search(r'^__version__ = "([^"]+)"', _init, re.MULTILINE)
assert _version is not None, "dedupstore/__init__.py sets no __version__"
release = version = _version[1]
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
html_theme = "alabaster"
