"""Turn a folder of echo cines (DICOM multi-frame, MP4/MOV/AVI, GIF) plus a labels CSV into the
EchoNet-Dynamic raw layout, so the one echonet_dynamic builder / pipeline / trainer path works on your own data.

    python -m echojax.data.ingest --input DIR --labels labels.csv --out RAW [--size 112] [--crop sector|center|none] [--strict]
    python -m echojax.data.prepare echonet_dynamic --manual-dir RAW --data-dir DATA   # then train on it

labels.csv (one row per video; column names are case-insensitive):

- ``file`` (required; also accepted: ``filename``, ``path``): the video's path relative to --input, its file
  name, or its name without extension.
- ``EF`` (required; also ``lvef``): ejection fraction in percent, 0..100.
- ``ESV``, ``EDV`` (optional, mL), ``split`` (optional: TRAIN/VAL/TEST, any case),
  ``patient`` (optional; also ``group``, ``study``): videos of one patient always land in the same split.

When the CSV has no split column, splits are assigned deterministically (for a given --seed) with
``echojax.data.splits.group_stratified_split``: 75/12.5/12.5% TRAIN/VAL/TEST, stratified by EF band (<40, 40-50,
>=50), patient-disjoint when a patient column is given.

Output (``RAW``): ``FileList.csv`` (FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split),
``VolumeTracings.csv`` (header only: ingested videos have no tracings) and ``Videos/<FileName>.avi`` (FFV1,
lossless, so the builder reads back exactly the frames ``python -m echojax.predict`` makes of the original file;
``size`` x ``size`` RGB: cropped to the ultrasound sector found from the cine's motion (``echojax.data.sector``:
black outside the cone, padded to a square, then resized); ``--crop center`` centre-crops to a square instead,
``--crop none`` squeezes). ``RAW/previews/<FileName>.png`` (``--previews DIR``) shows each file's crop.

FPS comes from the DICOM tags CineRate, then FrameTime (ms per frame), RecommendedDisplayFrameRate, then
FrameTimeVector; from the container for MP4/AVI (PyAV, else OpenCV); from frame durations for GIF. When none is
known, ``--default-fps`` is used and the file is noted.

Every file that could not be read is reported with the reason, every label row without a file, and every video
file without a label row; the report is printed and saved as ``RAW/ingest_report.json``. ``--strict`` stops at the
first problem instead.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from echojax.data.report import SkipReport
from echojax.data.video import write_avi
from echojax.errors import UserError, cli_main

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
GIF_SUFFIXES = (".gif",)
SPLITS = ("TRAIN", "VAL", "TEST")
FILE_COLUMNS = ("file", "filename", "file_name", "path")
EF_COLUMNS = ("ef", "lvef")
GROUP_COLUMNS = ("patient", "patient_id", "group", "study", "study_id")
FILELIST_HEADER = ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split")


class ReadError(Exception):
  """A cine could not be decoded; the message is the reason shown in the report."""


@dataclass
class Cine:
  frames: np.ndarray  # uint8 (T, H, W, 3) RGB
  fps: float | None  # None when the file does not say
  fps_source: str


# ----------------------------------------------------------------------------------------------------------------
# readers


def _to_uint8(arr: np.ndarray) -> np.ndarray:
  if arr.dtype == np.uint8:
    return arr
  arr = arr.astype(np.float64)
  lo, hi = float(arr.min()), float(arr.max())
  return ((arr - lo) / max(hi - lo, 1e-9) * 255.0 + 0.5).astype(np.uint8)


def _rgb(frames: np.ndarray) -> np.ndarray:
  """(T,H,W) or (T,H,W,1|3|4) -> (T,H,W,3)."""
  if frames.ndim == 3:
    frames = frames[..., None]
  if frames.shape[-1] == 1:
    return np.repeat(frames, 3, axis=-1)
  if frames.shape[-1] == 4:
    return frames[..., :3]
  return frames


def dicom_fps(ds) -> tuple[float | None, str]:
  """Frame rate from DICOM tags, in order of preference -> (fps or None, which tag)."""
  def num(v):
    try:
      f = float(v)
      return f if f > 0 and math.isfinite(f) else None
    except (TypeError, ValueError):
      return None

  if (v := num(ds.get("CineRate"))) is not None:
    return v, "CineRate"
  if (v := num(ds.get("FrameTime"))) is not None:
    return 1000.0 / v, "FrameTime"
  if (v := num(ds.get("RecommendedDisplayFrameRate"))) is not None:
    return v, "RecommendedDisplayFrameRate"
  vec = ds.get("FrameTimeVector")
  if vec is not None:
    try:
      vals = [float(x) for x in vec][1:]  # first entry is 0 (time of the first frame)
      vals = [x for x in vals if x > 0]
      if vals:
        return 1000.0 / float(np.mean(vals)), "FrameTimeVector"
    except (TypeError, ValueError):
      pass
  return None, "none"


def read_dicom(path: Path) -> Cine:
  """Decode a (multi-frame) DICOM cine -> RGB uint8 frames; YBR / palette / MONOCHROME1 converted."""
  import pydicom
  from pydicom.errors import InvalidDicomError
  from pydicom.pixels import iter_pixels

  try:
    with warnings.catch_warnings():  # truncation warnings become the reason below
      warnings.simplefilter("ignore")
      ds = pydicom.dcmread(path, stop_before_pixels=False)
  except InvalidDicomError as e:
    raise ReadError(f"not a DICOM file ({e})")
  except Exception as e:  # truncated/corrupt headers raise many types
    raise ReadError(f"unreadable DICOM ({type(e).__name__}: {e})")
  if "PixelData" not in ds:
    raise ReadError("DICOM has no complete pixel data (not an image/cine object, or the file is truncated)")
  photometric = str(ds.get("PhotometricInterpretation", ""))
  try:
    frames = [np.asarray(f) for f in iter_pixels(ds, as_rgb=True)]
  except Exception as e:
    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    name = getattr(tsyntax, "name", str(tsyntax))
    raise ReadError(f"DICOM pixel data could not be decoded (transfer syntax {name}: {type(e).__name__}: {e}); "
                    "for compressed cines install pylibjpeg + pylibjpeg-libjpeg (JPEG) / pylibjpeg-openjpeg (J2K)")
  if not frames:
    raise ReadError("DICOM has no frames")
  arr = np.stack(frames)
  if arr.ndim == 3 and int(ds.get("NumberOfFrames", 1) or 1) == 1 and int(ds.get("SamplesPerPixel", 1)) == 3:
    arr = arr[None]
  if photometric == "PALETTE COLOR":
    from pydicom.pixels import apply_color_lut

    arr = apply_color_lut(arr, ds)
  if photometric == "MONOCHROME1":
    arr = arr.max() - arr
  fps, src = dicom_fps(ds)
  return Cine(_rgb(_to_uint8(arr)), fps, src)


def read_container_video(path: Path) -> Cine:
  """MP4/MOV/AVI/... with PyAV (fps from the stream), falling back to OpenCV."""
  try:
    import av

    with av.open(str(path)) as container:
      if not container.streams.video:
        raise ReadError("file has no video stream")
      stream = container.streams.video[0]
      rate = stream.average_rate or stream.guessed_rate or stream.base_rate
      frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    if not frames:
      raise ReadError("no decodable frames (corrupt or truncated file)")
    fps = float(rate) if rate else None
    return Cine(np.stack(frames), fps if fps and fps > 0 else None, "container")
  except ReadError:
    raise
  except Exception as e:  # PyAV errors: try OpenCV before giving up
    err = f"{type(e).__name__}: {e}"
  from echojax.data.video import VideoReadError, read_video

  try:
    frames, fps = read_video(path)
  except VideoReadError as e:
    raise ReadError(f"not a readable video (PyAV: {err}; OpenCV: {e})")
  return Cine(frames, fps if fps > 0 else None, "container")


def read_gif(path: Path) -> Cine:
  """Animated GIF with Pillow -> RGB frames; fps from the mean frame duration."""
  from PIL import Image, ImageSequence, UnidentifiedImageError

  try:
    with Image.open(path) as im:
      frames, durations = [], []
      for fr in ImageSequence.Iterator(im):
        frames.append(np.asarray(fr.convert("RGB")))
        durations.append(fr.info.get("duration", 0) or 0)
  except (UnidentifiedImageError, OSError, SyntaxError) as e:
    raise ReadError(f"not a readable GIF ({type(e).__name__}: {e})")
  if not frames:
    raise ReadError("GIF has no frames")
  durations = [d for d in durations if d > 0]
  fps = 1000.0 / float(np.mean(durations)) if durations else None
  return Cine(np.stack(frames), fps, "GIF frame durations" if fps else "none")


def _looks_like_dicom(path: Path) -> bool:
  try:
    with open(path, "rb") as f:
      head = f.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"
  except OSError:
    return False


def read_cine(path: str | Path) -> Cine:
  """Dispatch on suffix (and the DICOM 'DICM' preamble for files without one). Raises ReadError with a reason."""
  path = Path(path)
  if not path.exists():
    raise ReadError("file not found")
  if path.stat().st_size == 0:
    raise ReadError("file is empty")
  suffix = path.suffix.lower()
  if suffix in DICOM_SUFFIXES or (suffix not in VIDEO_SUFFIXES + GIF_SUFFIXES and _looks_like_dicom(path)):
    return read_dicom(path)
  if suffix in GIF_SUFFIXES:
    return read_gif(path)
  if suffix in VIDEO_SUFFIXES:
    return read_container_video(path)
  raise ReadError(f"unsupported file type {suffix or '(no suffix, not DICOM)'}")


def is_candidate(path: Path) -> bool:
  """Files ingest looks at: known suffixes, or suffix-less files (DICOM exports often have none)."""
  if path.name.startswith(".") or not path.is_file():
    return False
  s = path.suffix.lower()
  return s in DICOM_SUFFIXES + VIDEO_SUFFIXES + GIF_SUFFIXES or s == "" or _looks_like_dicom(path)


CROPS = ("sector", "center", "none")


def to_square(frames: np.ndarray, size: int, crop: str = "sector") -> np.ndarray:
  """``size`` x ``size`` frames: ``crop='sector'`` (default) crops to the scan cone (``echojax.data.sector``: black
  outside it, padded to a square, never cut), ``'center'`` centre-crops to the largest square, ``'none'`` squeezes;
  then resized (area filter)."""
  if crop not in CROPS:
    raise ValueError(f"crop {crop!r}: use one of {', '.join(CROPS)}")
  if crop == "sector":
    from echojax.data.sector import crop_to_sector, find_sector

    return crop_to_sector(frames, find_sector(frames), size)
  t, h, w, c = frames.shape
  if crop == "center" and h != w:
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    frames = frames[:, y0:y0 + s, x0:x0 + s]
  if frames.shape[1:3] == (size, size):
    return np.ascontiguousarray(frames)
  return np.stack([cv2.resize(np.ascontiguousarray(f), (size, size), interpolation=cv2.INTER_AREA) for f in frames])


# ----------------------------------------------------------------------------------------------------------------
# labels


@dataclass
class LabelRow:
  row: int  # 1-based data row
  file: str
  ef: float
  esv: float
  edv: float
  split: str | None
  group: str | None


def _pick(header: list[str], names: tuple[str, ...]) -> str | None:
  low = {h.strip().lower(): h for h in header}
  for n in names:
    if n in low:
      return low[n]
  return None


def _num(v: str | None) -> float:
  try:
    return float(v) if v not in (None, "") else math.nan
  except ValueError:
    return math.nan


def read_labels(path: Path, report: SkipReport) -> list[LabelRow]:
  """Parse labels.csv (see the module docstring). Bad rows are reported (skip), never silently dropped."""
  if not path.is_file():
    raise UserError(f"labels file {path} (--labels) not found; it needs a 'file' column and an 'EF' column")
  with open(path, newline="", encoding="utf-8-sig") as f:
    reader = csv.DictReader(f)
    header = list(reader.fieldnames or [])
    file_col, ef_col = _pick(header, FILE_COLUMNS), _pick(header, EF_COLUMNS)
    if file_col is None or ef_col is None:
      missing = [n for n, c in (("file", file_col), ("EF", ef_col)) if c is None]
      raise UserError(f"{path}: column(s) {', '.join(missing)} missing (header is {','.join(header)}); labels.csv "
                      "needs a 'file' column (path relative to --input, file name or stem) and an 'EF' column (%)")
    split_col, group_col = _pick(header, ("split",)), _pick(header, GROUP_COLUMNS)
    esv_col, edv_col = _pick(header, ("esv",)), _pick(header, ("edv",))
    rows, seen = [], set()
    for i, rec in enumerate(reader, start=1):
      name = (rec.get(file_col) or "").strip()
      if not name:
        report.skip(str(path), f"empty '{file_col}' cell", row=i)
        continue
      ef = _num(rec.get(ef_col))
      if math.isnan(ef) or not 0 <= ef <= 100:
        report.skip(name, f"{ef_col} {rec.get(ef_col)!r} in {path.name} is not a number in 0..100", row=i)
        continue
      split = None
      if split_col is not None and (rec.get(split_col) or "").strip():
        split = rec[split_col].strip().upper()
        if split not in SPLITS:
          report.skip(name, f"{split_col} {rec[split_col]!r} in {path.name} is not one of {', '.join(SPLITS)}", row=i)
          continue
      if name in seen:
        report.skip(name, f"listed twice in {path.name} (first row kept)", row=i)
        continue
      seen.add(name)
      group = ((rec.get(group_col) or "").strip() or None) if group_col else None
      rows.append(LabelRow(i, name, ef, _num(rec.get(esv_col)) if esv_col else math.nan,
                           _num(rec.get(edv_col)) if edv_col else math.nan, split, group))
  return rows


def match_files(rows: list[LabelRow], files: list[Path],
                input_dir: Path) -> tuple[dict[int, Path], list[tuple[LabelRow, str]]]:
  """Label row -> file by relative path, then file name, then stem (case-insensitive at each level).

  Returns ({row number: path}, [(row, reason) for rows without a unique file]) in row order.
  """
  by_key: list[dict[str, list[Path]]] = [{}, {}, {}]
  for f in files:
    rel = f.relative_to(input_dir).as_posix()
    for level, key in enumerate((rel, f.name, f.stem)):
      by_key[level].setdefault(key.lower(), []).append(f)
  matched, problems = {}, []
  for r in rows:
    key = r.file.replace("\\", "/").lower()
    hit = None
    for level in range(3):
      cands = by_key[level].get(key, [])
      if len(cands) == 1:
        hit = cands[0]
        break
      if len(cands) > 1:
        hit = "ambiguous:" + ", ".join(sorted(c.relative_to(input_dir).as_posix() for c in cands))
        break
    if isinstance(hit, Path):
      matched[r.row] = hit
    elif hit:
      problems.append((r, f"matches several files ({hit[10:]}); use the relative path"))
    else:
      problems.append((r, "no such file under the input folder"))
  return matched, problems


def assign_splits(rows: list[LabelRow], seed: int) -> dict[int, str]:
  """Deterministic TRAIN/VAL/TEST for rows without one: EF-band stratified, patient-disjoint when given."""
  from echojax.data.splits import group_stratified_split

  todo = [r for r in rows if r.split is None]
  if not todo:
    return {}
  bands = ["low" if r.ef < 40 else "mid" if r.ef < 50 else "normal" for r in todo]
  groups = [r.group or f"file:{r.file}" for r in todo]
  names = group_stratified_split(bands, groups, {"TRAIN": 0.75, "VAL": 0.125, "TEST": 0.125}, seed=seed)
  return {r.row: s for r, s in zip(todo, names)}


def safe_name(path: Path, input_dir: Path, taken: set[str]) -> str:
  """Output FileName: the file stem, or the relative path joined with '_' when stems collide."""
  base = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem) or "video"
  if base in taken:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", path.relative_to(input_dir).with_suffix("").as_posix())
  name, k = base, 1
  while name in taken:
    k += 1
    name = f"{base}_{k}"
  taken.add(name)
  return name


# ----------------------------------------------------------------------------------------------------------------
# main


def ingest(input_dir: str | Path, labels: str | Path, out_dir: str | Path, *, size: int = 112, seed: int = 0,
           default_fps: float = 30.0, crop: str = "sector", strict: bool = False, stills: str = "drop",
           previews: str | Path | bool | None = None, progress: bool = True) -> SkipReport:
  """Build the EchoNet-Dynamic raw layout in ``out_dir``; returns the report (also saved as ingest_report.json).

  ``stills``: a single-frame file (a DICOM still, a one-frame GIF) is not a cine: "drop" skips it with that reason,
  "keep" ingests it as a 1-frame video with a note. When nothing could be ingested, no FileList is written.
  ``crop``: see :func:`to_square`. ``previews``: folder for one PNG per ingested file showing the crop (default
  ``<out_dir>/previews``; ``False`` writes none)."""
  from tqdm import tqdm

  input_dir, labels, out = Path(input_dir).expanduser(), Path(labels).expanduser(), Path(out_dir).expanduser()
  if not input_dir.is_dir():
    raise UserError(f"input folder {input_dir} (--input) does not exist")
  if size < 8:
    raise UserError(f"--size {size} is too small; EchoNet-Dynamic uses 112")
  if crop not in CROPS:
    raise UserError(f"--crop {crop!r}: use one of {', '.join(CROPS)}")
  if stills not in ("drop", "keep"):
    raise UserError(f"--stills {stills!r}: use drop or keep")
  report = SkipReport(strict=strict, fix_hint="fix the file or the labels row, or drop --strict to skip it")
  rows = read_labels(labels, report)
  files = sorted(p for p in input_dir.rglob("*") if is_candidate(p) and p.resolve() != labels.resolve())
  matched, problems = match_files(rows, files, input_dir)
  for r, reason in problems:
    report.skip(r.file, f"label row without a file: {reason}", row=r.row)
  used = set(matched.values())
  for f in files:
    if f not in used:
      report.note(f.relative_to(input_dir).as_posix(), "not listed in the labels CSV: not ingested")
  splits = assign_splits([r for r in rows if r.row in matched], seed)
  (out / "Videos").mkdir(parents=True, exist_ok=True)
  preview_dir = None if previews is False else (out / "previews" if previews is None else Path(previews).expanduser())
  taken: set[str] = set()
  out_rows = []
  todo = [r for r in rows if r.row in matched]
  for r in tqdm(todo, desc="ingest", unit="video", disable=not progress):
    path = matched[r.row]
    rel = path.relative_to(input_dir).as_posix()
    try:
      cine = read_cine(path)
    except ReadError as e:
      report.skip(rel, f"could not read: {e}", row=r.row)
      continue
    if len(cine.frames) == 1:
      if stills == "drop":
        report.skip(rel, "a single-frame still, not a cine (ingest it as a 1-frame video with --stills keep)",
                    row=r.row)
        continue
      report.note(rel, "a single-frame still, ingested as a 1-frame video (--stills keep)", row=r.row)
    fps = cine.fps
    if fps is None:
      fps = default_fps
      report.note(rel, f"fps unknown: no frame-rate tag/metadata, assumed --default-fps {default_fps}", row=r.row)
    name = safe_name(path, input_dir, taken)
    from echojax.data import sector as sector_mod

    if crop == "sector":
      sec = sector_mod.find_sector(cine.frames)
      frames = sector_mod.crop_to_sector(cine.frames, sec, size)
      if sec.note and (len(cine.frames) > 1 or sec.method == "center"):
        report.note(rel, f"--crop sector: {sec.note}", row=r.row)
    else:
      sec, frames = None, to_square(cine.frames, size, crop)
    if preview_dir is not None:
      if sec is None:
        sec = sector_mod.center_sector(cine.frames.shape[1:3]) if crop == "center" else sector_mod.Sector(
            (0, 0, cine.frames.shape[2], cine.frames.shape[1]), np.ones(cine.frames.shape[1:3], bool), "none")
      sector_mod.preview(cine.frames, sec, preview_dir / f"{name}.png", size, cropped=frames)
    write_avi(out / "Videos" / f"{name}.avi", frames, fps, codec="FFV1")  # lossless: = what predict reads
    split = r.split or splits[r.row]
    report.wrote(split)
    out_rows.append([name, f"{r.ef:.4f}", "" if math.isnan(r.esv) else f"{r.esv:.4f}",
                     "" if math.isnan(r.edv) else f"{r.edv:.4f}", size, size, f"{fps:.4f}", len(frames), split])
  if out_rows:
    empty = [s for s in SPLITS if not any(row[-1] == s for row in out_rows)]
    if empty:
      report.note("FileList.csv", f"split(s) {', '.join(empty)} got no video ({len(out_rows)} ingested): prepare "
                  "will leave them out; with this few videos give the labels CSV a 'split' column")
  else:  # nothing ingested: no empty FileList for prepare to trip over
    report.save(out / "ingest_report.json")
    return report
  with open(out / "FileList.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(FILELIST_HEADER)
    w.writerows(out_rows)
  with open(out / "VolumeTracings.csv", "w", newline="") as f:
    csv.writer(f).writerow(("FileName", "X1", "Y1", "X2", "Y2", "Frame"))
  report.save(out / "ingest_report.json")
  return report


@cli_main
def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog="python -m echojax.data.ingest", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--input", required=True, help="folder of DICOM / MP4 / GIF cines (searched recursively)")
  parser.add_argument("--labels", required=True, help="CSV with a 'file' and an 'EF' column (see above)")
  parser.add_argument("--out", required=True, help="raw folder to write (EchoNet-Dynamic layout)")
  parser.add_argument("--size", type=int, default=112, help="output side in pixels (default 112)")
  parser.add_argument("--seed", type=int, default=0, help="seed of the split assignment (default 0)")
  parser.add_argument("--default-fps", type=float, default=30.0, help="fps when a file does not say (default 30)")
  parser.add_argument("--crop", choices=CROPS, default="sector",
                      help="crop to the scan sector (default: black outside the cone, padded to a square), "
                           "centre-crop to a square, or squeeze (none)")
  parser.add_argument("--previews", default=None,
                      help="folder for one PNG per file showing the crop (default <out>/previews)")
  parser.add_argument("--strict", action="store_true", help="stop at the first unreadable file or bad row")
  parser.add_argument("--stills", choices=("drop", "keep"), default="drop",
                      help="single-frame files (DICOM stills): skip them (default) or ingest as 1-frame videos")
  args = parser.parse_args(argv)
  report = ingest(args.input, args.labels, args.out, size=args.size, seed=args.seed, default_fps=args.default_fps,
                  crop=args.crop, strict=args.strict, stills=args.stills, previews=args.previews)
  print(report.summary(saved_as=Path(args.out) / "ingest_report.json"))
  notes = report.notes
  if notes:
    print("notes:")
    for n in notes:
      print(f"  - {n}")
  if not sum(report.counts.values()):
    raise UserError(f"no video was ingested (see the skipped rows above and {Path(args.out) / 'ingest_report.json'})"
                    "; no FileList.csv was written")
  print(f"wrote {args.out}/FileList.csv, Videos/*.avi and ingest_report.json; next: python -m echojax.data.prepare "
        f"echonet_dynamic --manual-dir {args.out} --data-dir DATA_DIR")


if __name__ == "__main__":
  main()
