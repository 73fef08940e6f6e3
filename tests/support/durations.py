"""Where a test run's time goes: every test's setup, call and teardown seconds, written to
``build/test-durations.tsv`` and summed per test file at the end of the run (CI's output shows the
table; pytest's own ``--durations`` shows the slowest tests)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


class Durations:
    def __init__(self) -> None:
        self.seconds: dict[str, dict[str, float]] = defaultdict(dict)

    def add(self, nodeid: str, when: str, seconds: float) -> None:
        self.seconds[nodeid][when] = seconds

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["test\tsetup_s\tcall_s\tteardown_s"]
        for nodeid, parts in sorted(self.seconds.items(), key=lambda kv: -sum(kv[1].values())):
            lines.append("\t".join([nodeid, *(f"{parts.get(w, 0.0):.2f}" for w in ("setup", "call", "teardown"))]))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def table(self) -> str:
        per_file: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for nodeid, parts in self.seconds.items():
            entry = per_file[nodeid.split("::", 1)[0]]
            entry[0] += sum(parts.values())
            entry[1] += 1
        total = sum(seconds for seconds, _ in per_file.values())
        rows = ["| test file | tests | seconds | share |", "| --- | ---: | ---: | ---: |"]
        for name, (seconds, count) in sorted(per_file.items(), key=lambda kv: -kv[1][0]):
            rows.append(f"| {name} | {count} | {seconds:,.0f} | {seconds / total:.0%} |" if total else
                        f"| {name} | {count} | 0 | - |")
        rows.append(f"| all | {sum(c for _, c in per_file.values())} | {total:,.0f} | 100% |")
        return "\n".join(rows)
