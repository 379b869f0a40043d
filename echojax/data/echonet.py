"""EchoNet-Dynamic raw layout: reading FileList.csv / VolumeTracings.csv / Videos/*.avi, and method-of-discs volumes.

The raw layout (what real users download, and what the phantom generator writes)::

    <raw>/FileList.csv        FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split
    <raw>/VolumeTracings.csv  FileName,X1,Y1,X2,Y2,Frame   (FileName with .avi)
    <raw>/Videos/<FileName>.avi

VolumeTracings convention: for each traced frame, the first row is the LV long axis and the following rows are
the chords perpendicular to it (20 in the real data). The single-plane method of discs turns one traced frame into
a volume: ``V = pi/4 * sum(d_i^2) * L / n`` with ``L`` the long-axis length, ``d_i`` the chord lengths and ``n``
the number of chords. Of the traced frames the larger volume is end-diastole (ED), the smaller end-systole (ES).

This module is the one code path the TFDS builder uses for real and synthetic data. Problems are recorded in an
:class:`~echojax.data.report.SkipReport` (row skipped with a reason, or kept with a note), never silently dropped.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from pathlib import Path

import numpy as np

from echojax.data.report import SkipReport
from echojax.data.video import VideoReadError, probe_video, read_video, resize_frames
from echojax.errors import UserError

FILELIST_COLUMNS = ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split")
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
SPLITS = ("TRAIN", "VAL", "TEST")
# Pixel spacing the phantom generator uses for its 112x112 videos: volumes from traces in mL = cm^3.
PHANTOM_CM_PER_PIXEL = 0.15
# Videos with fewer frames than this are kept but noted (the pipeline pads clips); EchoNet clips are 32 frames.
SHORT_VIDEO_FRAMES = 32
# AVI header fps and FileList FPS may differ by this much before it is noted (FileList always wins).
FPS_TOLERANCE = 0.5

LAYOUT_HELP = ("an EchoNet-Dynamic folder must contain FileList.csv (columns " + ",".join(FILELIST_COLUMNS) +
               "), VolumeTracings.csv (columns " + ",".join(TRACING_COLUMNS) + ") and Videos/<FileName>.avi; "
               "make a synthetic one with: python -m echojax.data.synthetic echonet --out DIR")


@dataclasses.dataclass
class FileListRow:
  """One usable FileList.csv row. ``row`` is the 1-based data row (header not counted)."""
  file_name: str  # without .avi
  ef: float
  esv: float  # NaN when missing
  edv: float  # NaN when missing
  fps: float  # NaN when missing (then the AVI header is used)
  num_frames: int  # -1 when missing
  split: str  # TRAIN / VAL / TEST
  row: int


def strip_avi(name: str) -> str:
  """FileName with or without ``.avi`` (any case) -> the bare name."""
  name = name.strip()
  return name[:-4] if name.lower().endswith(".avi") else name


def _plain_name(name: str) -> bool:
  """A FileName that names a file directly inside Videos/ (no folder part, not '.'/'..', not absolute)."""
  return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..") and ":" not in name[:2]


def _float(value: str | None) -> float:
  """Parse a CSV cell as float; empty/non-numeric -> NaN."""
  try:
    return float(value) if value is not None and value.strip() != "" else math.nan
  except ValueError:
    return math.nan


def check_raw_dir(raw_dir: str | Path) -> Path:
  """The raw folder must exist and hold FileList.csv; otherwise a UserError that says what it must contain."""
  if raw_dir is None:
    raise UserError(f"no manual dir given: pass --manual-dir RAW where {LAYOUT_HELP}")
  raw = Path(raw_dir).expanduser()
  if raw.exists() and not raw.is_dir():
    raise UserError(f"manual dir {raw} is a file, not a folder: {LAYOUT_HELP}")
  if not raw.is_dir():
    raise UserError(f"manual dir {raw} does not exist: {LAYOUT_HELP}")
  if not (raw / "FileList.csv").is_file():
    raise UserError(f"{raw / 'FileList.csv'} not found: {LAYOUT_HELP}")
  return raw


def open_csv(path: Path) -> io.StringIO:
  """The CSV's text as a file for ``csv``: UTF-8 with or without a BOM (Excel writes one); anything else is a
  UserError naming the file, the offending byte and the fix."""
  data = path.read_bytes()
  try:
    text = data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    line = data[:e.start].count(b"\n") + 1
    raise UserError(f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}): save it as UTF-8, e.g. "
                    f"'CSV UTF-8' in Excel, or convert it with: iconv -f cp1252 -t utf-8 {path.name} > "
                    f"{path.stem}-utf8{path.suffix}") from None
  return io.StringIO(text, newline="")


def read_filelist(raw_dir: str | Path, report: SkipReport) -> list[FileListRow]:
  """Parse FileList.csv. Rows with a FileName that is a path (``../x``), a missing/non-numeric EF, an unknown split
  or a duplicate name are skipped (``report.skip``, which raises in strict mode). Split is case-insensitive;
  FileName may carry ``.avi``. Unusable ESV/EDV (negative, inf, text) are stored as missing (NaN) and an unusable
  NumberOfFrames (0, negative, text) as -1 (the decoded count is used), each with a note."""
  path = check_raw_dir(raw_dir) / "FileList.csv"
  with open_csv(path) as f:
    reader = csv.DictReader(f)
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    for col in ("FileName", "EF", "Split"):
      if col not in header:
        raise UserError(f"{path}: column {col!r} missing (header is {','.join(header)}); {LAYOUT_HELP}")
    rows, seen = [], set()
    for i, rec in enumerate(reader, start=1):
      raw_name = (rec.get("FileName") or "").strip()
      if not raw_name:
        report.skip(str(path), "empty FileName", row=i)
        continue
      name = strip_avi(raw_name)
      if not _plain_name(name):
        report.skip(str(path), f"FileName {raw_name!r} is not a plain file name (a path would read a video "
                    f"outside Videos/)", row=i)
        continue
      ef = _float(rec.get("EF"))
      if math.isnan(ef):
        report.skip(f"{name}.avi", f"EF missing or not a number ({rec.get('EF')!r}) in FileList.csv", row=i)
        continue
      if not 0.0 <= ef <= 100.0:
        report.skip(f"{name}.avi", f"EF out of range 0..100 ({ef}) in FileList.csv", row=i)
        continue
      split = (rec.get("Split") or "").strip().upper()
      if split not in SPLITS:
        report.skip(f"{name}.avi", f"unknown Split {rec.get('Split')!r} (expected one of {', '.join(SPLITS)})",
                    row=i)
        continue
      if name in seen:
        report.skip(f"{name}.avi", "duplicate FileName in FileList.csv (first row kept)", row=i)
        continue
      seen.add(name)
      vols = {}
      for col in ("ESV", "EDV"):  # volumes are optional labels: an unusable one is stored as missing (NaN), noted
        cell = (rec.get(col) or "").strip()
        v = _float(cell)
        if cell and not (math.isfinite(v) and v >= 0):
          report.note(f"{name}.avi", f"{col} not a volume >= 0 ({cell!r}) in FileList.csv: stored as missing (NaN)",
                      row=i)
          v = math.nan
        vols[col] = v
      cell = (rec.get("NumberOfFrames") or "").strip()
      nf = _float(cell)
      if cell and not (math.isfinite(nf) and nf >= 1 and nf == int(nf)):
        report.note(f"{name}.avi", f"NumberOfFrames not a whole number >= 1 ({cell!r}) in FileList.csv: the decoded "
                    f"frame count is used", row=i)
        nf = math.nan
      rows.append(FileListRow(name, ef, vols["ESV"], vols["EDV"], _float(rec.get("FPS")),
                              -1 if math.isnan(nf) else int(nf), split, i))
  return rows


def read_tracings(raw_dir: str | Path, report: SkipReport | None = None) -> dict[str, dict[int, np.ndarray]]:
  """Parse VolumeTracings.csv -> {file name without .avi: {frame: float64 (K, 4) rows X1,Y1,X2,Y2}}.

  Frames keep their order of appearance. A missing file gives {} (every video then has no tracings, noted once).
  A malformed row (wrong column count, non-numeric cell) drops all tracings of its video, with a note: its frames
  are read as long axis then chords in row order, which a dropped row would shift. Tracings are optional for
  training, so they never skip a video.
  """
  path = Path(raw_dir) / "VolumeTracings.csv"
  if not path.is_file():
    if report is not None:
      report.note(str(path), "VolumeTracings.csv missing: no tracings for any video")
    return {}
  out: dict[str, dict[int, list]] = {}
  broken: dict[str, int] = {}  # video -> first malformed row: its rows are in an order (long axis, chords) that a
  # dropped row would shift, so all of that video's tracings are dropped
  with open_csv(path) as f:
    reader = csv.reader(f)
    header = [h.strip() for h in next(reader, [])]
    if header[:6] != list(TRACING_COLUMNS):
      raise UserError(f"{path}: header must be {','.join(TRACING_COLUMNS)}, got {','.join(header)}; {LAYOUT_HELP}")
    for i, rec in enumerate(reader, start=1):
      if not rec:
        continue
      name = strip_avi(rec[0])
      try:
        if len(rec) != len(header):
          raise ValueError(f"{len(rec)} columns, the header has {len(header)}")
        x1, y1, x2, y2 = (float(v) for v in rec[1:5])
        frame = int(float(rec[5]))
      except (ValueError, IndexError, OverflowError):
        if name and name not in broken:
          broken[name] = i
          if report is not None:
            report.note(str(path), f"malformed tracing row (all tracings of {name}.avi dropped): {','.join(rec)}",
                        row=i)
        elif not name and report is not None:
          report.note(str(path), f"malformed tracing row ignored: {','.join(rec)}", row=i)
        continue
      out.setdefault(name, {}).setdefault(frame, []).append((x1, y1, x2, y2))
  return {k: {fr: np.asarray(v, dtype=np.float64) for fr, v in d.items()} for k, d in out.items() if k not in broken}


def disc_volume(trace: np.ndarray, cm_per_pixel: float = PHANTOM_CM_PER_PIXEL) -> float:
  """Single-plane method of discs for one traced frame (row 0 = long axis, rows 1.. = chords) -> volume in mL."""
  t = np.asarray(trace, dtype=np.float64)
  if t.ndim != 2 or t.shape[0] < 2 or t.shape[1] != 4:
    raise ValueError(f"a traced frame needs a long-axis row plus chords as (K>=2, 4) rows, got shape {t.shape}")
  length = math.hypot(t[0, 2] - t[0, 0], t[0, 3] - t[0, 1])
  d = np.hypot(t[1:, 2] - t[1:, 0], t[1:, 3] - t[1:, 1])
  return float(math.pi / 4.0 * np.sum(d ** 2) * length / len(d) * cm_per_pixel ** 3)


@dataclasses.dataclass
class TracedPair:
  ed_frame: int
  es_frame: int
  ed_trace: np.ndarray  # (K, 4)
  es_trace: np.ndarray
  edv: float  # mL at the given spacing
  esv: float

  @property
  def ef(self) -> float:
    return 100.0 * (1.0 - self.esv / self.edv) if self.edv > 0 else math.nan


def ed_es_checked(traces: dict[int, np.ndarray] | None,
                  cm_per_pixel: float = PHANTOM_CM_PER_PIXEL) -> tuple[TracedPair | None, str | None]:
  """(ED/ES pair, None), or (None, why not): no tracings, a traced frame with a non-finite coordinate or a bad
  shape, fewer than two traced frames, or ED and ES of equal volume (which would store ed_frame == es_frame)."""
  if not traces:
    return None, "no tracings"
  vols = {}
  for frame, t in traces.items():
    if not np.all(np.isfinite(t)):
      return None, f"traced frame {frame} has a non-finite coordinate (NaN/inf)"
    try:
      vols[frame] = disc_volume(t, cm_per_pixel)
    except ValueError as e:
      return None, f"traced frame {frame}: {e}"
  if len(vols) < 2:
    return None, f"{len(vols)} traced frame (ED and ES need two)"
  ed = max(vols, key=vols.get)
  es = min(vols, key=vols.get)
  if not vols[ed] > vols[es]:
    return None, f"traced frames {ed} and {es} have the same volume ({vols[ed]:.4g}), so ED and ES are undefined"
  return TracedPair(ed, es, traces[ed], traces[es], vols[ed], vols[es]), None


def ed_es(traces: dict[int, np.ndarray] | None, cm_per_pixel: float = PHANTOM_CM_PER_PIXEL) -> TracedPair | None:
  """The ED (largest disc volume) and ES (smallest) traced frames, or None when they cannot be told apart
  (:func:`ed_es_checked` says why)."""
  return ed_es_checked(traces, cm_per_pixel)[0]


def ef_from_tracings(raw_dir: str | Path, cm_per_pixel: float = PHANTOM_CM_PER_PIXEL) -> dict[str, TracedPair]:
  """{file name: TracedPair} for every video with two traced frames (EF / volumes recomputed from the traces)."""
  pairs = {}
  for name, tr in read_tracings(raw_dir).items():
    p = ed_es(tr, cm_per_pixel)
    if p is not None:
      pairs[name] = p
  return pairs


def video_path(raw_dir: str | Path, name: str) -> Path:
  return Path(raw_dir) / "Videos" / f"{name}.avi"


def usable_rows(raw_dir: str | Path, rows: list[FileListRow], report: SkipReport) -> list[FileListRow]:
  """Rows whose video passes :func:`probe_video`; the others are skipped with the reason."""
  keep = []
  for row in rows:
    try:
      probe_video(video_path(raw_dir, row.file_name))
    except VideoReadError as e:
      _skip_video(report, row, e)
      continue
    keep.append(row)
  return keep


def _skip_video(report: SkipReport, row: FileListRow, e: VideoReadError) -> None:
  msg = str(e)
  reason = ("video missing" if "not found" in msg else "video truncated" if msg.startswith("truncated")
            else "video unreadable")
  report.skip(f"Videos/{row.file_name}.avi", f"{reason}: {e}", row=row.row)


def build_example(raw_dir: str | Path, row: FileListRow, traces: dict[int, np.ndarray] | None, size: int,
                  report: SkipReport) -> dict | None:
  """Decode one listed video and assemble the ``echonet_dynamic`` feature dict at ``size`` x ``size``.

  Returns None (after ``report.skip``) when the video is missing or unreadable. Fix-ups are noted and kept:
  frames not 112x112 (resized), FileList FPS vs AVI header disagreement (FileList wins), FileList FPS missing or
  not > 0 (header used), short videos, missing or unusable tracings (NaN coordinates, ED and ES of equal volume:
  ed/es frame -1, empty traces), traced frames beyond the video. Trace coordinates are scaled from
  the raw video's pixels to the stored ``size``.
  """
  rel = f"Videos/{row.file_name}.avi"
  try:
    frames, header_fps = read_video(video_path(raw_dir, row.file_name))
  except VideoReadError as e:
    _skip_video(report, row, e)
    return None
  t, h, w = frames.shape[:3]
  if (h, w) != (112, 112):
    report.note(rel, f"video not 112x112 (resized): {h}x{w} -> {size}x{size}", row=row.row)
  fps = row.fps
  if not math.isfinite(fps) or fps <= 0:
    what = "missing" if math.isnan(fps) else f"not a rate > 0 ({fps:g})"
    if math.isfinite(header_fps) and header_fps > 0:
      report.note(rel, f"FPS {what} in FileList (AVI header used): {header_fps:g}", row=row.row)
      fps = header_fps
    else:
      report.skip(rel, f"FPS {what} in FileList.csv and missing in the AVI header", row=row.row)
      return None
  elif header_fps > 0 and abs(header_fps - fps) > FPS_TOLERANCE:
    report.note(rel, f"FPS disagrees with AVI header (FileList wins): FileList {fps:g}, header {header_fps:g}",
                row=row.row)
  if t < SHORT_VIDEO_FRAMES:
    report.note(rel, f"short video (kept, the pipeline pads clips): {t} frames", row=row.row)
  if row.num_frames > 0 and row.num_frames != t:
    report.note(rel, f"NumberOfFrames differs from decoded frames: FileList {row.num_frames}, decoded {t}",
                row=row.row)
  frames = resize_frames(frames, size)
  pair, why = ed_es_checked(traces)
  empty = np.zeros((0, 4), np.float32)
  ed_frame = es_frame = -1
  ed_trace = es_trace = empty
  if pair is None and not traces:
    report.note(rel, "no tracings (kept, ed_frame/es_frame = -1)", row=row.row)
  elif pair is None:
    report.note(rel, f"tracings unusable (dropped, video kept with ed_frame/es_frame = -1): {why}", row=row.row)
  elif max(pair.ed_frame, pair.es_frame) >= t or min(pair.ed_frame, pair.es_frame) < 0:
    report.note(rel, f"traced frame outside the video (tracings dropped): ED {pair.ed_frame}, ES {pair.es_frame}, "
                f"{t} frames", row=row.row)
  else:
    scale = np.array([size / w, size / h, size / w, size / h])
    ed_frame, es_frame = pair.ed_frame, pair.es_frame
    ed_trace = (pair.ed_trace * scale).astype(np.float32)
    es_trace = (pair.es_trace * scale).astype(np.float32)
  return {
      "video": frames,
      "ef": np.float32(row.ef),
      "esv": np.float32(row.esv),
      "edv": np.float32(row.edv),
      "fps": np.float32(fps),
      "num_frames": np.int32(t),
      "ed_frame": np.int32(ed_frame),
      "es_frame": np.int32(es_frame),
      "ed_trace": ed_trace,
      "es_trace": es_trace,
      "file_name": row.file_name,
  }
