"""Echo view classification: still frames ("images" config) and cines with optional synchronised ECG ("videos").

Raw layout (manual_dir = the dataset folder):

    <root>/images/<VIEW>/<file>.png|jpg|jpeg|bmp|...     still frames, one folder per class
    <root>/videos/<VIEW>/<file>.avi|mp4|mov|mkv           cines, one folder per class
    <root>/videos/<VIEW>/<same stem>.csv                  optional ECG for that cine, CSV: header row
                                                          ``time_s,ecg_mv``, then one ``time,value`` row per
                                                          sample at a fixed rate (fs = 1 / time step). time_s
                                                          is on the video clock: 0 = the first frame, so an ECG
                                                          recorded from before the cine starts negative
    <root>/videos/<VIEW>/<same stem>.hea (+ .dat/.mat)    ... or the ECG as a WFDB record (the lead with the best
                                                          signal quality, at its native rate)
    <root>/splits.csv                                     optional: columns ``file,split`` (file relative to
                                                          root, split in train/val/test); overrides the default

Class folders must be among the 11 views (``CLASSES``: A2C A3C A4C A5C PLAX PSAX SUBCOSTAL SUPRASTERNAL CW_DOPPLER
PW_DOPPLER M_MODE; folder names are matched case-insensitively). Phantoms of this layout:
``python -m echojax.data.synthetic echo_views --out DIR``.

Configs: ``images`` (image uint8 (S,S,3)), ``videos`` (video uint8 (T,S,S,3), fps, num_frames, ecg float32 (N,),
ecg_fs float32 (0 when the cine has no ECG), r_peaks int32 (K,) = ED frame indices from the ECG's R peaks
(``echojax.data.ecg``; empty without ECG)), both with label (ClassLabel of CLASSES) and file_name (path relative to
root). S = 112 by default (``images_224`` and ``videos_64`` configs, or ``EchoViewsConfig(size=...)``).

Splits: 70/15/15 train/val/test, stratified by class: within each class files go to the split furthest below its
share, visited in an order fixed by a hash of the file name (``echojax.data.splits.group_stratified_split``, each
file its own group), so the split of a file never depends on the machine or the listing order. Files missing from
a given ``splits.csv`` are skipped with a reason. No patient ids exist in this layout, so leakage between splits
cannot be ruled out (noted in the report).

Bad input is never dropped silently (``self.report``, an echojax SkipReport; ``strict=True`` fails on the first):
unreadable image or video, a file in an unknown class folder, an ECG file that does not parse, or an ECG that does
not cover the cine (frames / fps) to within 5% of its duration (at least two frame intervals) at either end -> the
item is skipped with the reason. An ECG longer than the cine is cut to the cine's span (noted), so the stored
``ecg[0]`` is always at the first frame. Missing ECG samples are noted, not skipped: short gaps are interpolated by
the reader, long ones stored as NaN (no R peaks there). Other files (not images/videos/ECG) are noted and ignored.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from echojax.data.ecg import EcgReadError, align_to_video, ecg_phases, find_ecg_file, read_ecg_file
from echojax.data.images import IMAGE_SUFFIXES, ImageReadError, read_image, resize_image
from echojax.data.labels import ECHO_VIEWS
from echojax.data.report import RawFolderBuilder, SkipReport
from echojax.data.splits import group_stratified_split
from echojax.data.video import VideoReadError, read_video, resize_frames
from echojax.errors import UserError

CLASSES = ECHO_VIEWS
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".m4v")
ECG_SUFFIXES = (".csv", ".hea", ".dat", ".mat")
FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
ECG_DURATION_TOL = 0.05  # relative; plus two frame intervals
# Pixels are stored as raw bytes: a read is a memory copy. (Encoding.NONE writes uint8 as a tf.train int64 list:
# 8x the disk and ~10x slower to build, 20 s vs 2 s for the 44-cine smoke set; ZLIB spends ~0.2 s per cine.)
PIXEL_ENCODING = tfds.features.Encoding.BYTES


@dataclasses.dataclass
class EchoViewsConfig(tfds.core.BuilderConfig):
  """kind: "images" or "videos"; size: output frame side in pixels."""

  kind: str = "images"
  size: int = 112


def list_items(root: Path, kind: str, report: SkipReport) -> list[dict]:
  """Rows {path, rel, label, ecg} of the ``images`` or ``videos`` tree; unknown class folders are skipped."""
  root = Path(root)
  if not root.is_dir():
    raise UserError(f"echo_views manual dir {root} does not exist: point --manual-dir at a folder with "
                    f"{kind}/<VIEW>/<file> (see tfds_builders/echo_views)")
  base = root / kind
  if not base.is_dir():
    raise UserError(f"{base} not found: the '{kind}' config reads {kind}/<VIEW>/<file> under the manual dir "
                    f"(VIEW one of {', '.join(CLASSES)})")
  suffixes = IMAGE_SUFFIXES if kind == "images" else VIDEO_SUFFIXES
  by_upper = {c.upper(): c for c in CLASSES}
  items = []
  for cls_dir in sorted(p for p in base.iterdir() if p.is_dir()):
    label = by_upper.get(cls_dir.name.upper())
    for path in sorted(p for p in cls_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
      rel = path.relative_to(root).as_posix()
      suf = path.suffix.lower()
      if kind == "videos" and suf in ECG_SUFFIXES:
        if suf in (".dat", ".mat") and not path.with_suffix(".hea").exists():
          report.note(rel, f"ignored: WFDB signal file without its header {path.stem}.hea")
        elif suf in (".csv", ".hea") and not any(path.with_suffix(s).exists() for s in VIDEO_SUFFIXES):
          report.note(rel, "ignored: ECG file without a video of the same stem")
        continue
      if suf not in suffixes:
        report.note(rel, f"ignored: not a{'n image' if kind == 'images' else ' video'} file extension")
        continue
      if label is None:
        report.skip(rel, f"unknown class folder {cls_dir.name!r}; expected one of {', '.join(CLASSES)} "
                         "(rename the folder or move the file)")
        continue
      items.append(dict(path=path, rel=rel, label=label,
                        ecg=find_ecg_file(path) if kind == "videos" else None))
  if not items:
    raise UserError(f"no usable {kind} found under {base}: expected {kind}/<VIEW>/<file> with VIEW one of "
                    f"{', '.join(CLASSES)}")
  return items


def assign_splits(root: Path, items: list[dict], report: SkipReport, seed: int = 0) -> list[str | None]:
  """Split per item: from ``splits.csv`` when present (missing rows -> skipped), else stratified 70/15/15."""
  path = Path(root) / "splits.csv"
  if path.exists():
    with open(path, newline="") as f:
      reader = csv.DictReader(f)
      cols = [c.strip() for c in reader.fieldnames or []]
      if "file" not in cols or "split" not in cols:
        raise UserError(f"{path}: needs columns file,split; found {', '.join(cols) or 'none'}")
      table = {}
      for r, row in enumerate(reader, start=1):
        split = (row.get("split") or "").strip().lower()
        if split not in FRACTIONS:
          raise UserError(f"{path} row {r}: split is {row.get('split')!r}; use one of {', '.join(FRACTIONS)}")
        table[(row.get("file") or "").strip()] = split
    out: list[str | None] = []
    for it in items:
      s = table.get(it["rel"])
      if s is None:
        report.skip(it["rel"], "not listed in splits.csv (add a row 'file,split' or delete splits.csv)")
      out.append(s)
    return out
  report.note("(dataset)", "no patient ids in this layout: each file is its own group, so leakage between "
                           "splits cannot be ruled out")
  return group_stratified_split([it["label"] for it in items], [it["rel"] for it in items], FRACTIONS, seed=seed)


def load_video_item(it: dict, size: int, report: SkipReport) -> dict | None:
  """Decode one cine (+ ECG) -> feature dict, or None after recording why it was skipped."""
  try:
    frames, fps = read_video(it["path"])
  except VideoReadError as e:
    report.skip(it["rel"], f"unreadable video: {e}")
    return None
  t = len(frames)
  if frames.shape[1:3] != (size, size):
    report.note(it["rel"], f"resized: {frames.shape[1]}x{frames.shape[2]} -> {size}x{size}")
    frames = resize_frames(frames, size)
  ecg = np.zeros(0, np.float32)
  ecg_fs = 0.0
  r_peaks = np.zeros(0, np.int32)
  if it["ecg"] is not None:
    ecg_rel = Path(it["rel"]).with_suffix(it["ecg"].suffix).as_posix()
    try:
      trace = read_ecg_file(it["ecg"])
    except EcgReadError as e:
      report.skip(it["rel"], f"ECG {ecg_rel} does not parse: {e.reason}")
      return None
    for note in trace.notes:
      report.note(it["rel"], f"ECG read: {ecg_rel}: {note}")
    if fps <= 0:
      fps = t / trace.duration_s
      report.note(it["rel"], f"fps missing in video header: taken from the ECG duration ({fps:.2f})")
    tol = max(ECG_DURATION_TOL * t / fps, 2.0 / fps)
    sig, why = align_to_video(trace, t, fps, tol)
    if why is not None:
      report.skip(it["rel"], f"ECG {ecg_rel} {why}")
      return None
    extra = trace.duration_s - t / fps
    if extra > tol:
      report.note(it["rel"], f"ECG cropped to the cine: {ecg_rel} is {extra:.2f} s longer than the video")
    ecg, ecg_fs = sig, float(trace.fs)
    # R peaks on the whole recording (beats at the cine's edges are found better with context), then mapped to
    # frames on the video clock
    try:
      r_peaks = ecg_phases(trace.signal, ecg_fs, t, fps, offset_s=-trace.start_s).ed_frames.astype(np.int32)
    except UserError as e:  # e.g. a rate too coarse for R peaks: the cine is kept, its sampler falls back
      report.note(it["rel"], f"ECG without R peaks: {ecg_rel}: {e}")
  elif fps <= 0:
    report.note(it["rel"], "fps missing in video header and no ECG: stored as 0")
  return {"video": frames, "fps": np.float32(fps), "num_frames": np.int32(t), "ecg": ecg,
          "ecg_fs": np.float32(ecg_fs), "r_peaks": r_peaks}


class EchoViews(RawFolderBuilder, tfds.core.GeneratorBasedBuilder):
  """Echo views (11 classes): still frames or cines with synchronised ECG; stratified 70/15/15 splits."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [
      EchoViewsConfig(name="images", kind="images", size=112, description="still frames, 112x112"),
      EchoViewsConfig(name="videos", kind="videos", size=112, description="cines + ECG, 112x112"),
      EchoViewsConfig(name="images_224", kind="images", size=224, description="still frames, 224x224"),
      EchoViewsConfig(name="videos_64", kind="videos", size=64, description="cines + ECG, 64x64"),
  ]
  DEFAULT_CONFIG_NAME = "images"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point --manual-dir at a folder with images/<VIEW>/<file>.png|jpg and/or videos/<VIEW>/<file>.avi|mp4 "
      "(+ optional <stem>.csv 'time_s,ecg_mv' or WFDB <stem>.hea with .dat/.mat). "
      "Synthetic: python -m echojax.data.synthetic echo_views --out DIR")

  def check_manual_dir(self, manual_dir: str | Path) -> None:
    """Layout check run by ``python -m echojax.data.prepare`` before TFDS starts: the config's folder exists."""
    kind = self.builder_config.kind
    base = Path(manual_dir) / kind
    if not base.is_dir() or not any(p.is_dir() for p in base.iterdir()):
      raise UserError(f"{base} not found or has no class folders: the '{self.builder_config.name}' config reads "
                      f"{kind}/<VIEW>/<file> under the manual dir (VIEW one of {', '.join(CLASSES)}). "
                      f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    s = cfg.size
    common = {"label": tfds.features.ClassLabel(names=list(CLASSES)), "file_name": tfds.features.Text()}
    if cfg.kind == "images":
      feats = {"image": tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8, encoding=PIXEL_ENCODING), **common}
      keys = ("image", "label")
    else:
      feats = {
          "video": tfds.features.Tensor(shape=(None, s, s, 3), dtype=np.uint8, encoding=PIXEL_ENCODING),
          "fps": tfds.features.Scalar(dtype=np.float32),
          "num_frames": tfds.features.Scalar(dtype=np.int32),
          "ecg": tfds.features.Tensor(shape=(None,), dtype=np.float32),
          "ecg_fs": tfds.features.Scalar(dtype=np.float32),
          "r_peaks": tfds.features.Tensor(shape=(None,), dtype=np.int32),
          **common,
      }
      keys = ("video", "label")
    return tfds.core.DatasetInfo(builder=self, description=__doc__, features=tfds.features.FeaturesDict(feats),
                                 supervised_keys=keys)

  def _split_generators(self, dl_manager):
    root = Path(dl_manager.manual_dir)
    items = list_items(root, self.builder_config.kind, self.report)
    splits = assign_splits(root, items, self.report, self._split_seed)
    return {name: self._generate_examples([it for it, s in zip(items, splits) if s == name], name)
            for name in FRACTIONS}

  def _generate_examples(self, items, split):
    cfg = self.builder_config
    for it in items:
      if cfg.kind == "images":
        try:
          img = read_image(it["path"])
        except ImageReadError as e:
          self.report.skip(it["rel"], f"unreadable image: {e}")
          continue
        ex = {"image": resize_image(img, cfg.size)}
      else:
        ex = load_video_item(it, cfg.size, self.report)
        if ex is None:
          continue
      self.report.wrote(split)
      yield it["rel"], {**ex, "label": it["label"], "file_name": it["rel"]}
