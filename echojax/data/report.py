"""Counted, named skips for dataset builders and ingestion.

Builders never drop a row silently: each problem is recorded with the file, the row (when there is one)
and the reason. In strict mode the first problem raises a :class:`~echojax.errors.UserError`; otherwise the
row is skipped and the report summarised at the end of preparation (and saved as JSON beside the data).
Notes (``note``) are things that were fixed up but kept, e.g. a resized video or an FPS disagreement.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path

from echojax.errors import UserError


@dataclasses.dataclass
class Issue:
  file: str
  reason: str
  row: int | None = None  # 1-based data row in the CSV that listed the file (header not counted)
  kind: str = "skip"  # "skip" (row dropped) or "note" (kept, but fixed up)

  def __str__(self) -> str:
    where = f"{self.file}" + (f" (row {self.row})" if self.row is not None else "")
    return f"{where}: {self.reason}"


class SkipReport:
  """Collects skipped rows and notes. ``strict=True`` turns the first skip into a UserError."""

  def __init__(self, strict: bool = False, fix_hint: str = "fix or remove the row, or drop --strict to skip it"):
    self.strict = strict
    self.fix_hint = fix_hint
    self.issues: list[Issue] = []
    self.counts: collections.Counter = collections.Counter()  # examples written per split

  def skip(self, file: str, reason: str, row: int | None = None) -> None:
    issue = Issue(str(file), reason, row, "skip")
    if self.strict:
      raise UserError(f"{issue} ({self.fix_hint})")
    self.issues.append(issue)

  def note(self, file: str, reason: str, row: int | None = None) -> None:
    self.issues.append(Issue(str(file), reason, row, "note"))

  def wrote(self, split: str, n: int = 1) -> None:
    self.counts[split] += n

  @property
  def skipped(self) -> list[Issue]:
    return [i for i in self.issues if i.kind == "skip"]

  @property
  def notes(self) -> list[Issue]:
    return [i for i in self.issues if i.kind == "note"]

  def summary(self) -> str:
    lines = ["examples per split: " + (", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "none")]
    lines.append(f"skipped rows: {len(self.skipped)}")
    lines += [f"  - {i}" for i in self.skipped]
    if self.notes:
      by_reason = collections.Counter(i.reason.split(":")[0] for i in self.notes)
      lines.append(f"notes (kept, fixed up): {len(self.notes)}")
      lines += [f"  - {r}: {n} file(s)" for r, n in by_reason.most_common()]
    return "\n".join(lines)

  def to_json(self) -> dict:
    return {
        "counts": dict(self.counts),
        "skipped": [dataclasses.asdict(i) for i in self.skipped],
        "notes": [dataclasses.asdict(i) for i in self.notes],
    }

  def save(self, path: str | Path) -> None:
    Path(path).write_text(json.dumps(self.to_json(), indent=2))
