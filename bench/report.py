"""How the benchmarks describe the machine and print their figures.

Every script prints the same way: a header naming the machine, then one line per
figure (``name  value unit  [limit/ratio]``), so a run pasted into
docs/PERFORMANCE.md needs no editing and two runs diff cleanly.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class Machine:
    """What the figures were measured on."""

    cpus: int
    cpu_model: str
    ram_gib: float
    kernel: str
    python: str
    date: str

    def describe(self) -> str:
        """One line for the top of a report."""
        return (
            f"{self.cpus} CPUs ({self.cpu_model}), {self.ram_gib:.1f} GiB RAM,"
            f" Linux {self.kernel}, Python {self.python}, {self.date}"
        )


def machine() -> Machine:
    """The machine this process runs on, from /proc."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) / (1024 * 1024)
                break
    except OSError:
        pass
    return Machine(
        cpus=os.cpu_count() or 1,
        cpu_model=model,
        ram_gib=ram,
        kernel=platform.release(),
        python=platform.python_version(),
        date=time.strftime("%Y-%m-%d %H:%M %Z"),
    )


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples``, nearest-rank; NaN when empty."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@attrs.frozen(kw_only=True)
class Figure:
    """One measured number, with what it is compared to."""

    name: str
    value: float
    unit: str
    #: What bounds it ("spawn bound"), and the bound's value, when there is one.
    limit_name: str | None = None
    limit: float | None = None
    #: The issue's target for ``value / limit`` (or for ``value`` when no limit).
    target: str | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """``value / limit``, when both are known."""
        if self.limit is None or not self.limit:
            return None
        return self.value / self.limit

    @property
    def met(self) -> bool | None:
        """Whether the target holds: a bare number (``>= 0.6``) for the ratio when
        there is a limit, a number with a unit (``< 10 ms``) for the value. None
        without a target, without the number it is about, or for a target written
        in words (``~0``)."""
        if not self.target:
            return None
        found = _TARGET.fullmatch(self.target.strip())
        by_ratio = self.limit_name and found is not None and not found.group("unit")
        subject = self.ratio if by_ratio else self.value
        if found is None or subject is None or math.isnan(subject):
            return None
        operator, bound = found.group("op"), float(found.group("bound"))
        return _COMPARE[operator](subject, bound)

    def line(self) -> str:
        """The figure as one printed line."""
        text = f"  {self.name:<44} {_number(self.value):>10} {self.unit}"
        if self.ratio is not None:
            text += f"   = {self.ratio:.2f} x {self.limit_name} ({_number(self.limit or 0)})"
        if self.target:
            text += (
                f"   target {self.target}"
                + {True: " (met)", False: " (NOT MET)", None: ""}[self.met]
            )
        if self.note:
            text += f"   [{self.note}]"
        return text


#: A target that can be checked: a comparison with a number, and perhaps a unit.
_TARGET = re.compile(r"(?P<op>>=|<=|>|<)\s*(?P<bound>[0-9]*\.?[0-9]+)\s*(?P<unit>[^\s0-9]*)")
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
}


def _met(figure: Figure) -> str:
    return {True: "met", False: "**not met**", None: ""}[figure.met]


def _number(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def header(title: str, where: Machine | None = None) -> None:
    """Print a section title and the machine (once per run: pass ``where`` after that)."""
    print(f"== {title}")
    if where is None:
        print(f"   {machine().describe()}")
        busy_warning()
    sys.stdout.flush()


def show(figures: Iterable[Figure]) -> None:
    """Print figures, one line each."""
    for figure in figures:
        print(figure.line())
    sys.stdout.flush()


def skipped(what: str, why: str) -> None:
    """Say, loudly, that part of a benchmark did not run."""
    print(f"  SKIPPED {what}: {why}")
    sys.stdout.flush()


def save(path: str | None, title: str, figures: Sequence[Figure], **extra: Any) -> None:
    """Write the figures as JSON to ``path`` (nothing when None)."""
    if path is None:
        return
    record = {
        "title": title,
        "machine": attrs.asdict(machine()),
        "figures": [attrs.asdict(f) | {"ratio": f.ratio} for f in figures],
        **extra,
    }
    Path(path).write_text(json.dumps(record, indent=2) + "\n")


def busy_warning(seconds: float = 0.5) -> float:
    """Print a warning when other processes keep the CPUs busy; return their share (%).

    Figures taken on a busy machine are not worth comparing: say so up front.
    """

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return 0.0
    busy = 100.0 * (1 - (idle1 - idle0) / max(1, total1 - total0))
    if busy > 10:
        print(f"  WARNING the machine is {busy:.0f}% busy before the benchmark starts;")
        print("          figures taken now are not comparable with a quiet run")
    sys.stdout.flush()
    return busy


def summary(figures: Sequence[Figure]) -> str:
    """A markdown table of every figure, with its ratio and target when it has them."""
    lines = ["| figure | value | ratio | target | met |", "|---|---|---|---|---|"]
    for f in figures:
        value = f"{_number(f.value)} {f.unit}".strip()
        ratio = f"{f.ratio:.2f} x {f.limit_name}" if f.ratio is not None else ""
        note = f" ({f.note})" if f.note else ""
        lines.append(f"| {f.name}{note} | {value} | {ratio} | {f.target or ''} | {_met(f)} |")
    return "\n".join(lines)
