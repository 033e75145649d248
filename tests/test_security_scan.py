"""`bandit` over src/: no finding (each accepted exception is marked `# nosec BXXX` with its reason)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def test_bandit_finds_nothing_in_src():
    scan = subprocess.run(  # bandit comes with the test extras
        [sys.executable, "-m", "bandit", "-r", str(SRC), "-f", "json", "-q"], capture_output=True, text=True,
        timeout=300,
    )
    report = json.loads(scan.stdout)
    findings = [f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}" for r in report["results"]]
    assert not findings, "\n".join(findings)
    assert not report["errors"], report["errors"]
    assert scan.returncode == 0
