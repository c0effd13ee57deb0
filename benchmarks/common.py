"""What the benchmarks' reports share: the commit and machine lines at the top, and writing the report."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path


def short_commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


def report_header(script: str) -> list[str]:
    """The date, commit and machine (uname, CPUs, load average) of a run on one torch thread."""
    return [f"# {script}  {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}  commit {short_commit()}",
            f"# machine: {' '.join(platform.uname())}; nproc {os.cpu_count()}; load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; torch threads 1"]


def write_report(lines: list[str], out: str | Path) -> None:
    """Print the report and write it to `out` (its folder made if missing)."""
    text = "\n".join(lines) + "\n"
    print(text)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
