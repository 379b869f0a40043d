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
import re
from pathlib import Path

from echojax.errors import UserError


EXAMPLES_PER_REASON = 3  # examples printed per reason in SkipReport.summary
REPORT_NAME = "echojax_report.json"  # where prepare saves the full report


def reason_kind(reason: str) -> str:
  """The reason without its particulars: text before the first ':' with parenthesised values removed, e.g.
  "EF missing or not a number ('n/a') in FileList.csv" -> "EF missing or not a number in FileList.csv"."""
  head = reason.split(":")[0]
  return re.sub(r"\s+", " ", re.sub(r"\([^()]*\)", "", head)).strip() or head.strip()


def _groups(issues) -> dict:
  out: dict = {}
  for i in issues:
    out.setdefault((i.kind, reason_kind(i.reason)), []).append(i)
  return out


def _grouped(issues, examples: int) -> list[str]:
  lines = []
  for (_, kind), group in sorted(_groups(issues).items(), key=lambda kv: -len(kv[1])):
    lines.append(f"  - {kind}: {len(group)}")
    lines += [f"      {i}" for i in group[:examples]]
    if len(group) > examples:
      lines.append(f"      ... and {len(group) - examples} more")
  return lines


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

  def summary(self, examples: int = EXAMPLES_PER_REASON, saved_as: str | Path | None = None) -> str:
    """Counts per split, then skips and notes grouped by reason: a count and up to ``examples`` of each, so
    thousands of skips print a few lines, not one line each. ``saved_as`` (where :meth:`save` wrote the full
    list) is named when some were left out."""
    lines = ["examples per split: " + (", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "none")]
    lines.append(f"skipped rows: {len(self.skipped)}")
    lines += _grouped(self.skipped, examples)
    if self.notes:
      lines.append(f"notes (kept, fixed up): {len(self.notes)}")
      lines += _grouped(self.notes, examples)
    if saved_as is not None and any(len(g) > examples for g in _groups(self.issues).values()):
      lines.append(f"(every skipped row and note is listed in {saved_as})")
    return "\n".join(lines)

  def to_json(self) -> dict:
    return {
        "counts": dict(self.counts),
        "skipped": [dataclasses.asdict(i) for i in self.skipped],
        "notes": [dataclasses.asdict(i) for i in self.notes],
    }

  def save(self, path: str | Path) -> None:
    Path(path).write_text(json.dumps(self.to_json(), indent=2))


class RawFolderBuilder:
  """What every echojax TFDS builder of a raw folder shares; list it before ``tfds.core.GeneratorBasedBuilder``.
  Keywords: ``strict`` (the first skipped row is a UserError), ``split_seed`` (the seed of a builder's own split
  rule, as ``self._split_seed``; builders whose splits come from the raw data ignore it) and ``file_format``
  (default array_record: random access without TensorFlow, ``tfds.data_source``). ``self.report`` collects the
  skips and notes that ``python -m echojax.data.prepare`` prints."""

  def __init__(self, *, strict: bool = False, split_seed: int = 0, **kwargs):
    self.report = SkipReport(strict=strict)
    self._split_seed = split_seed
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)
