"""``make demo``'s script: it finishes by itself without a terminal, and its claims hold.

The demo checks its own claims as it runs (a reused upload makes no inner call and no
Appwrite request, one object per distinct content, every printed link answers 200 with
the exact bytes) and exits non-zero when one fails; this runs it as ``make demo`` does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: A whole demo run on a busy machine: generous, never hit when the demo is right.
DEADLINE = 600


def test_the_demo_runs_to_the_end_without_a_terminal_and_every_link_opens() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-W",
            "error::DeprecationWarning",
            str(ROOT / "examples/demo/run_demo.py"),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    header = re.search(r"^(\d+) uploads of (\d+) distinct contents", output, re.MULTILINE)
    assert header, output
    uploads, contents = map(int, header.groups())
    assert f"objects stored:     {contents}  (one per distinct content" in output
    reused = uploads - contents
    # A hit calls the inner storage at most for verify_hits' one exists() (the demo checks
    # which methods it called), and not at all when the index is trusted.
    hit_calls = re.search(rf", (\d+) for the {reused} reused", output)
    assert hit_calls and int(hit_calls.group(1)) in (0, reused), output
    assert "verify_hits=False (the index is trusted): 0 inner calls" in output
    hit_requests = re.search(rf"the {reused} reused uploads: (\d+) requests, 0 B sent", output)
    assert hit_requests and int(hit_requests.group(1)) in (0, reused), output
    links = re.findall(r"^  (\d{3}) .* (http://127\.0\.0\.1:\d+/\S+)$", output, re.MULTILINE)
    assert len(links) >= contents, output
    assert {status for status, _url in links} == {"200"}
    assert re.search(r"^  206 for 'Range: bytes=", output, re.MULTILINE)
    assert "served until you press Enter" not in output
