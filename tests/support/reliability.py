"""The reliability figures: what each fault test injected, what it compared, and how many records
it found lost or duplicated (counted from the lake, before the test asserts they are 0); and each
bad input a test tried, with how it ended (a quarantine row, a clear error, a warning).

Tests record rows through the ``reliability`` fixture; at the end of the session the table is
printed (``./dev/test.sh -m fault``) and written to ``build/reliability.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class FaultFigure:
    fault: str  # what was done, e.g. "SIGKILL of the driver after the first micro-batch"
    job: str
    runs_compared: str  # e.g. "faulted + rerun vs one clean run"
    records_checked: int
    lost: int
    duplicated: int


@dataclass(frozen=True)
class BadInput:
    door: str  # where it came in, e.g. "ingest_images"
    input: str  # what it was, e.g. "a symbolic link to a missing file"
    ended: str  # how it ended, e.g. "quarantine, reason broken_link"


@dataclass
class ReliabilityFigures:
    faults: list[FaultFigure] = field(default_factory=list)
    bad_inputs: list[BadInput] = field(default_factory=list)

    def bad_input(self, door: str, what: str, ended: str) -> None:
        self.bad_inputs.append(BadInput(door, what, ended))

    def record(self, fault: str, job: str, runs_compared: str, records_checked: int, lost: int,
               duplicated: int) -> None:
        self.faults.append(FaultFigure(fault, job, runs_compared, int(records_checked), int(lost), int(duplicated)))

    def table(self) -> str:
        lines = []
        if self.faults:
            lines += ["| job | fault injected | runs compared | records checked | lost | duplicated |",
                      "| --- | --- | --- | ---: | ---: | ---: |"]
            for f in sorted(self.faults, key=lambda f: (f.job, f.fault)):
                lines.append(f"| {f.job} | {f.fault} | {f.runs_compared} | {f.records_checked} | {f.lost} | "
                             f"{f.duplicated} |")
            total = (sum(f.records_checked for f in self.faults), sum(f.lost for f in self.faults),
                     sum(f.duplicated for f in self.faults))
            lines += [f"| **all** | {len(self.faults)} faults | | {total[0]} | {total[1]} | {total[2]} |", ""]
        if self.bad_inputs:
            lines += ["| door | bad input | how it ended |", "| --- | --- | --- |"]
            lines += [f"| {_cell(b.door)} | {_cell(b.input)} | {_cell(b.ended)} |"
                      for b in sorted(self.bad_inputs, key=lambda b: b.door)]
            lines.append(f"| **all** | {len(self.bad_inputs)} bad inputs | |")
        return "\n".join(lines)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"faults": [asdict(f) for f in self.faults],
                                    "bad_inputs": [asdict(b) for b in self.bad_inputs]}, indent=2))


def _cell(text: str, limit: int = 160) -> str:
    """``text`` as one Markdown table cell: one line, pipes escaped, at most ``limit`` characters."""
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def lost_and_duplicated(expected: list[str], found: list[str]) -> tuple[int, int]:
    """How many of ``expected`` keys are missing from ``found``, and how many ``found`` repeats."""
    return len(set(expected) - set(found)), len(found) - len(set(found))
