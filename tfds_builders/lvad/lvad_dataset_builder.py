"""LVAD cohort: hospital apical four-chamber cines of patients who received a left-ventricular assist device, with
whether each died after implantation (the EF study's second stage; seed 002), motion-masked into EchoNet-Dynamic's
112 x 112 grey clips.

Raw layout (manual_dir)::

    <root>/labels.csv                     patient_id,died[,any clinical columns]   died: 1/0 (also yes/no, true/false)
    <root>/studies/<patient_id>/<cine>    one or more A4C cines per patient: DICOM multi-frame, AVI, MP4, ...

Each cine is decoded once (``echojax.data.ingest.read_cine``), turned grey and masked: ``motion="flow"`` (default)
keeps the convex hull of the pixels with high mean optical flow (``echojax.data.sector``, ``FlowParams``, the
threshold in ``flow_threshold``), blacks out everything outside it (text, the ECG trace, the probe marker), crops
to the hull's box padded to a square and resizes to ``size`` (area filter); ``motion="range"`` finds the hull from
the pixels' max - min instead; ``motion="none"`` keeps the whole frame, padded to a square with black (the
no-mask comparison). Stored: ``video`` uint8 (T, S, S, 3) (grey in three channels, as EchoNet's AVIs), ``died``
(ClassLabel survived/died), ``patient_id``, ``file_name`` (relative to root), ``fps``, ``num_frames``, the source
size, the mask's ``mask_box`` (x0, y0, x1, y1 in source pixels) and ``mask_method``. A preview PNG per cine
(frame, motion map, hull, masked crop) is written to ``<version dir>/previews/<patient_id>/<cine>.png``.

One split, ``train``: the whole cohort. With 34 patients the evaluation is cross-validation, whose stratified,
patient-level folds are drawn from this split by ``patient_id``.

Named skips (``self.report``; ``strict=True`` fails on the first): a labels row without a patient id, with a died
value that is not 0/1, or repeating a patient; a patient with no studies folder or no cine in it; a studies folder
no labels row names; an unreadable cine. Cines without a frame rate are kept (fps 0) and noted; so is a cine
whose mask fell back (no motion found).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import cv2
import numpy as np
import tensorflow_datasets as tfds

from echojax.data import ingest, sector
from echojax.data.echonet import open_csv
from echojax.data.report import RawFolderBuilder, SkipReport
from echojax.errors import UserError

LABELS_FILE = "labels.csv"
STUDIES_DIR = "studies"
CLASSES = ("survived", "died")
TRUE_WORDS = {"1", "yes", "true", "y", "died", "dead"}
FALSE_WORDS = {"0", "no", "false", "n", "survived", "alive"}
MOTIONS = ("flow", "range", "none")
PIXEL_ENCODING = tfds.features.Encoding.BYTES


@dataclasses.dataclass
class LvadConfig(tfds.core.BuilderConfig):
  """size: stored side; motion: flow | range | none (module docstring); flow_threshold: FlowParams.threshold."""

  size: int = 112
  motion: str = "flow"
  flow_threshold: float = sector.FlowParams.threshold


def read_labels(root: Path, report: SkipReport) -> dict[str, int]:
  """{patient_id: died} from ``labels.csv``; bad rows are named skips."""
  path = Path(root) / LABELS_FILE
  with open_csv(path) as f:
    reader = csv.DictReader(f)
    low = {(c or "").strip().lower(): c for c in (reader.fieldnames or [])}
    missing = [c for c in ("patient_id", "died") if c not in low]
    if missing:
      raise UserError(f"{path}: missing column(s) {', '.join(missing)}; the header must name patient_id and died "
                      f"(1 = died, 0 = survived); found {', '.join(low) or 'no header'}")
    out: dict[str, int] = {}
    for i, row in enumerate(reader, start=1):
      pid = (row.get(low["patient_id"]) or "").strip()
      val = (row.get(low["died"]) or "").strip().lower()
      if not pid:
        report.skip(LABELS_FILE, "no patient_id", row=i)
      elif val not in TRUE_WORDS | FALSE_WORDS:
        report.skip(LABELS_FILE, f"died={val!r} for {pid}: use 1 (died) or 0 (survived)", row=i)
      elif pid in out:
        report.skip(LABELS_FILE, f"patient {pid} is listed twice (the first row is kept)", row=i)
      else:
        out[pid] = int(val in TRUE_WORDS)
  return out


def list_studies(root: Path, labels: dict[str, int], report: SkipReport) -> list[tuple[str, Path, str]]:
  """(patient_id, path, path relative to root) of every cine of every labelled patient, sorted."""
  base = Path(root) / STUDIES_DIR
  folders = {p.name: p for p in base.iterdir() if p.is_dir()} if base.is_dir() else {}
  for name in sorted(set(folders) - set(labels)):
    report.skip(f"{STUDIES_DIR}/{name}", "no row in labels.csv names this patient")
  items = []
  for pid in sorted(labels):
    if pid not in folders:
      report.skip(f"{STUDIES_DIR}/{pid}", "patient has no studies folder")
      continue
    files = sorted(p for p in folders[pid].rglob("*") if p.is_file())
    cines = [p for p in files if ingest.is_candidate(p)]
    for p in sorted(set(files) - set(cines)):
      if not p.name.startswith("."):
        report.note(p.relative_to(root).as_posix(), "not a cine: ignored")
    if not cines:
      report.skip(f"{STUDIES_DIR}/{pid}", "no cine in the patient's studies folder")
    items += [(pid, p, p.relative_to(root).as_posix()) for p in cines]
  return items


def mask_cine(frames: np.ndarray, config: LvadConfig) -> tuple[np.ndarray, sector.Sector]:
  """RGB frames (T, H, W, 3) -> (stored clip (T, S, S, 3) uint8 grey in three channels, the mask's Sector)."""
  if config.motion not in MOTIONS:
    raise UserError(f"lvad config motion={config.motion!r}: use one of {', '.join(MOTIONS)}")
  grey = np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames])
  h, w = grey.shape[1:]
  if config.motion == "none":
    sec = sector.Sector((0, 0, w, h), np.ones((h, w), bool), "none")
  else:
    sec = sector.find_sector(grey, motion=config.motion, flow=sector.FlowParams(threshold=config.flow_threshold))
  clip = sector.crop_to_sector(grey, sec, config.size)
  return np.repeat(clip[..., None], 3, axis=-1), sec


def stored_clip(path: str | Path, config: LvadConfig) -> tuple[np.ndarray, float | None, sector.Sector]:
  """One cine file as this dataset stores it: (clip, fps or None, Sector); raises ingest.ReadError."""
  cine = ingest.read_cine(path)
  clip, sec = mask_cine(cine.frames, config)
  return clip, cine.fps, sec


def stored_video(path: str | Path, size: int, builder_config: str | None = None) -> tuple[np.ndarray, float | None]:
  """``echojax.predict``'s hook: a user's cine masked as builder config ``builder_config`` (default "112") stores
  it, at ``size``; (clip, fps or None). Raises ingest.ReadError."""
  name = str(builder_config or Lvad.DEFAULT_CONFIG_NAME)
  configs = {c.name: c for c in Lvad.BUILDER_CONFIGS}
  if name not in configs:
    raise UserError(f"lvad builder config {name!r} (config field data.builder_config) is unknown; configs: "
                    f"{', '.join(configs)}")
  clip, fps, _ = stored_clip(path, dataclasses.replace(configs[name], size=int(size)))
  return clip, fps


class Lvad(RawFolderBuilder, tfds.core.GeneratorBasedBuilder):
  """LVAD cohort cines motion-masked to S x S grey clips, with mortality; one split (the cohort)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [
      LvadConfig(name="112", description="optical-flow mask, 112x112"),
      LvadConfig(name="112_range", motion="range", description="max-min motion mask, 112x112"),
      LvadConfig(name="112_nomask", motion="none", description="no mask: the whole frame padded square, 112x112"),
  ]
  DEFAULT_CONFIG_NAME = "112"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point --manual-dir at a folder with labels.csv (patient_id,died[,...]) and studies/<patient_id>/<cine> "
      "(DICOM, AVI, MP4). Synthetic: python -m echojax.data.synthetic lvad --out DIR")

  @staticmethod
  def check_manual_dir(path: str | Path) -> None:
    """Layout check run by ``python -m echojax.data.prepare`` before TFDS starts."""
    root = Path(path)
    if not (root / LABELS_FILE).is_file() or not (root / STUDIES_DIR).is_dir():
      raise UserError(f"{root} needs {LABELS_FILE} and a {STUDIES_DIR}/ folder. {Lvad.MANUAL_DOWNLOAD_INSTRUCTIONS}")

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.size
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Tensor(shape=(None, s, s, 3), dtype=np.uint8, encoding=PIXEL_ENCODING),
            "died": tfds.features.ClassLabel(names=list(CLASSES)),
            "patient_id": tfds.features.Text(),
            "file_name": tfds.features.Text(),
            "fps": tfds.features.Scalar(dtype=np.float32),
            "num_frames": tfds.features.Scalar(dtype=np.int32),
            "source_height": tfds.features.Scalar(dtype=np.int32),
            "source_width": tfds.features.Scalar(dtype=np.int32),
            "mask_box": tfds.features.Tensor(shape=(4,), dtype=np.int32),
            "mask_method": tfds.features.Text(),
        }),
        supervised_keys=("video", "died"),
    )

  def _split_generators(self, dl_manager):
    root = Path(dl_manager.manual_dir)
    self.check_manual_dir(root)
    labels = read_labels(root, self.report)
    items = list_studies(root, labels, self.report)
    if not items:
      raise UserError(f"{root}: no cine of a labelled patient could be found (see the skips above)")
    return {"train": self._generate_examples(root, items, labels)}

  def _generate_examples(self, root: Path, items, labels):
    cfg = self.builder_config
    previews = Path(self.data_dir) / "previews"
    for pid, path, rel in items:
      try:
        cine = ingest.read_cine(path)
      except ingest.ReadError as e:
        self.report.skip(rel, f"unreadable cine: {e}")
        continue
      clip, sec = mask_cine(cine.frames, cfg)
      if sec.note:
        self.report.note(rel, f"mask: {sec.note}")
      if not cine.fps:
        self.report.note(rel, "no frame rate in the file: stored as fps 0")
      out = previews / pid / f"{Path(rel).name}.png"
      out.parent.mkdir(parents=True, exist_ok=True)
      if cfg.motion != "none":
        sector.preview(cine.frames, sec, out, size=cfg.size, cropped=clip)
      self.report.wrote("train")
      yield rel, {"video": clip, "died": labels[pid], "patient_id": pid, "file_name": rel,
                  "fps": float(cine.fps or 0.0), "num_frames": len(clip),
                  "source_height": int(cine.frames.shape[1]), "source_width": int(cine.frames.shape[2]),
                  "mask_box": np.asarray(sec.box, np.int32), "mask_method": sec.method}
