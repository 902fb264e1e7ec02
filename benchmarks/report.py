"""The one Markdown table: a row per figure, with its target and whether it was met."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import attrs


@attrs.frozen
class Row:
    figure: str
    value: str
    target: str = "—"
    met: bool | None = None  # None: no target to meet, or not measured
    data: dict[str, Any] = attrs.field(factory=dict)  # the raw numbers, for --json


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count() or 0
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{cores} cores{f' ({model})' if model else ''} · {python} · {platform.system()} {platform.machine()}"


def verdict(met: bool | None) -> str:
    return {True: "✅ met", False: "❌ **missed**", None: "—"}[met]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[Row], *, title: str, elapsed_s: float) -> str:
    lines = [
        f"### {title}",
        "",
        "| figure | value | target | |",
        "|---|---|---|---|",
        f"| machine | {_cell(machine())} | — | — |",
    ]
    for row in rows:
        lines.append(f"| {_cell(row.figure)} | {_cell(row.value)} | {_cell(row.target)} | {verdict(row.met)} |")
    lines += ["", f"Run took {elapsed_s:.0f} s; `{' '.join([Path(sys.executable).name, *sys.argv])}`."]
    return "\n".join(lines)
