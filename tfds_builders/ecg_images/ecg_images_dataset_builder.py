"""Photographed or scanned 12-lead ECG printouts -> diagnostic class (PTB-XL superclasses by default).

Raw layout (manual_dir = ROOT), either of:

* class folders: ``ROOT/<class>/<file>.png|jpg|jpeg|bmp|tif|tiff`` (one folder per class; no patient ids);
* CSV: ``ROOT/labels.csv`` with columns ``file,label`` and optional ``patient`` (or ``patient_id``) and ``split``;
  ``file`` is relative to ROOT. When both exist, labels.csv is used.

Classes: PTB-XL's five diagnostic superclasses ``NORM, MI, STTC, CD, HYP`` (label ids 0-4,
``echojax.data.labels.ECG_SUPERCLASSES``), unless ``ROOT/classes.txt`` lists others: one class per line, the line
order is the label id. Labels (folder names or the ``label`` column) match the class names case-insensitively.
The list is never inferred from the data: a typo would become a class of its own, and the label ids would depend
on which classes one folder happens to hold. A file with a label outside the list is skipped naming the file (and
row) and the classes, and a note counts each unknown label.

Each image is read once with ``echojax.data.images.read_image``: EXIF orientation applied, any size, format and
bit depth (16-bit PNG/TIFF), grey or colour, alpha composited onto white (paper). It is then *letterboxed*: the
longer side is scaled to S and the shorter one padded with white to a square, centred, so the whole printout is
kept (no lead or rhythm strip cut off) with its geometry undistorted (a US-letter or A4 page at S=224 is about
224x160 px of printout between two white bands). S = 224 (config ``224``, the default) or 448 (config ``448``).

Features: ``image`` uint8 (S,S,3); ``label`` (ClassLabel of the class list); ``file_name`` (path relative to
ROOT, the record's key); ``patient_id`` (empty when none); ``source_height``, ``source_width`` int32 (the file's
size in pixels after EXIF orientation).

Splits ``train``/``val``/``test``, in this order of precedence:

1. labels.csv has a ``split`` column: that split (``train``, ``val`` or ``validation``, ``test``, any case); any
   other value, an empty cell included, is a UserError naming the row. A patient found in two splits is noted.
2. labels.csv has a ``patient`` column: 70/15/15 stratified by label with every patient in exactly one split
   (``echojax.data.splits.group_stratified_split``); a row without a patient id is its own group.
3. otherwise 70/15/15 stratified by label, each file its own group (noted: leakage between splits cannot be ruled
   out, as two printouts of one patient may land in different splits).

Splits are assigned to the readable images only; a split left without any is left out (noted). Problems are named
skips in ``self.report`` (an echojax SkipReport; ``strict=True`` fails on the first): an unreadable file, an empty
(0-byte) file, an image smaller than 64 px on a side, a CSV row whose file is missing, lies outside ROOT or is
listed twice, and an unknown label. Phantoms of both layouts: ``python -m echojax.data.synthetic ecg_images``.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
from pathlib import Path, PurePosixPath

import numpy as np
import tensorflow_datasets as tfds
from tqdm import tqdm

from echojax.data.echonet import open_csv
from echojax.data.images import IMAGE_SUFFIXES, ImageReadError, image_size, letterbox_image, read_image
from echojax.data.labels import ECG_SUPERCLASSES
from echojax.data.report import RawFolderBuilder, SkipReport
from echojax.data.splits import group_stratified_split
from echojax.errors import UserError

FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "test": "test"}
PATIENT_COLUMNS = ("patient", "patient_id")
MIN_SIDE = 64  # px: a smaller file is a thumbnail or an icon, not a readable printout
PAPER = (255, 255, 255)  # alpha background and letterbox padding
CLASSES_FILE = "classes.txt"
LABELS_FILE = "labels.csv"
# Pixels as raw bytes: a read is a memory copy (measured for echo_views: Encoding.NONE is 8x the disk, ZLIB slower).
PIXEL_ENCODING = tfds.features.Encoding.BYTES


def store(img: np.ndarray, size: int) -> np.ndarray:
  """A decoded printout as the dataset stores it: letterboxed onto white paper to size x size."""
  return letterbox_image(img, size, PAPER)


def stored_image(path: str | Path, size: int) -> np.ndarray:
  """One image file as this dataset stores it (what ``echojax.predict`` feeds a model trained on it)."""
  return store(read_image(path, background=PAPER), size)


def read_classes(root: Path) -> tuple[str, ...]:
  """The class list: ``ROOT/classes.txt`` (one per line, in label-id order) or the five PTB-XL superclasses."""
  path = Path(root) / CLASSES_FILE
  if not path.exists():
    return ECG_SUPERCLASSES
  names = [line.strip() for line in open_csv(path).read().splitlines() if line.strip()]
  if not names:
    raise UserError(f"{path} is empty: list one class per line (the line order is the label id), or delete it to "
                    f"use the default {', '.join(ECG_SUPERCLASSES)}")
  seen: dict[str, str] = {}
  for n in names:
    if n.casefold() in seen:
      raise UserError(f"{path}: class {n!r} is listed twice (as {seen[n.casefold()]!r}; names match "
                      "case-insensitively)")
    seen[n.casefold()] = n
  return tuple(names)


def _read_labels_csv(path: Path) -> tuple[list[dict], dict[str, str]]:
  """Rows of labels.csv with lower-cased column names, and {role: column} for the optional columns present."""
  with open_csv(path) as f:
    reader = csv.DictReader(f)
    cols = [(c or "").strip() for c in (reader.fieldnames or [])]
    low = {c.lower(): c for c in cols}
    missing = [c for c in ("file", "label") if c not in low]
    if missing:
      raise UserError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(cols) or 'none'}. The file "
                      "needs columns file,label and may have patient and split (see tfds_builders/ecg_images)")
    reader.fieldnames = [c.lower() for c in cols]
    rows = [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]
  optional = {"patient": next((c for c in PATIENT_COLUMNS if c in low), None)}
  optional["split"] = "split" if "split" in low and any(r.get("split") for r in rows) else None
  return rows, {k: v for k, v in optional.items() if v}


class _Labels:
  """Label -> canonical class name (case-insensitive); unknown labels are skipped and counted for one note each."""

  def __init__(self, classes: tuple[str, ...], report: SkipReport, root: Path):
    self.by_key = {c.casefold(): c for c in classes}
    self.classes, self.report, self.root = classes, report, root
    self.unknown: collections.Counter = collections.Counter()

  def __call__(self, label: str, rel: str, row: int | None) -> str | None:
    if not label:
      self.report.skip(rel, f"empty label cell in {LABELS_FILE}", row)
      return None
    cls = self.by_key.get(label.casefold())
    if cls is None:
      self.unknown[label] += 1
      where = "classes.txt" if (self.root / CLASSES_FILE).exists() else "the default PTB-XL superclasses"
      self.report.skip(rel, f"unknown label {label!r}: not one of {', '.join(self.classes)} (from {where}; list "
                            f"your classes in {self.root / CLASSES_FILE}, one per line, to use others)", row)
    return cls

  def finish(self) -> None:
    for label, n in self.unknown.most_common():
      self.report.note("(dataset)", f"label {label!r} is not a class: {n} file(s) skipped")


def list_items(root: Path, classes: tuple[str, ...], report: SkipReport) -> tuple[list[dict], str]:
  """Rows {path, rel, label, patient_id, split, row} of either layout (no image is decoded or probed here), and
  the split rule: "column", "patient" or "label"."""
  root = Path(root)
  if not root.is_dir():
    raise UserError(f"ECG-image manual dir {root} does not exist: point --manual-dir at a folder with "
                    f"<class>/<file>.png or {LABELS_FILE} (see tfds_builders/ecg_images)")
  labels = _Labels(classes, report, root)
  items: list[dict] = []
  if (root / LABELS_FILE).exists():
    path = root / LABELS_FILE
    rows, cols = _read_labels_csv(path)
    seen = set()
    for r, row in enumerate(rows, start=1):
      rel = row.get("file", "")
      if not rel:
        report.skip(LABELS_FILE, "empty file cell", r)
        continue
      pure = PurePosixPath(rel.replace("\\", "/"))
      if pure.is_absolute() or ".." in pure.parts:
        report.skip(rel, f"file lies outside the raw folder; give it relative to {root}", r)
        continue
      rel = pure.as_posix()
      split = None
      if "split" in cols:
        split = SPLIT_NAMES.get(row.get("split", "").lower())
        if split is None:
          raise UserError(f"{path} row {r} ({rel}): split is {row.get('split', '')!r}; use one of train, val "
                          "(or validation), test, or remove the split column to let the builder split")
      if rel in seen:
        report.skip(rel, f"listed twice in {LABELS_FILE} (first row kept)", r)
        continue
      seen.add(rel)
      if not (root / rel).is_file():
        report.skip(rel, f"image file not found (listed in {LABELS_FILE})", r)
        continue
      cls = labels(row.get("label", ""), rel, r)
      if cls is not None:
        items.append(dict(path=root / rel, rel=rel, label=cls, patient_id=row.get(cols.get("patient", ""), ""),
                          split=split, row=r))
    rule = "column" if "split" in cols else "patient" if "patient" in cols else "label"
  else:
    for cls_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
      for path in sorted(p for p in cls_dir.iterdir() if not p.name.startswith(".")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
          report.note(rel, "ignored: a folder inside a class folder (images go directly in ROOT/<class>/)")
          continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
          report.note(rel, "ignored: not an image file extension")
          continue
        cls = labels(cls_dir.name, rel, None)
        if cls is not None:
          items.append(dict(path=path, rel=rel, label=cls, patient_id="", split=None, row=None))
    rule = "label"
  labels.finish()
  if not items:
    raise UserError(f"no usable images under {root}: expected <class>/<file>.png|jpg or {LABELS_FILE} "
                    f"(file,label[,patient,split]) with classes among {', '.join(classes)}\n" + report.summary())
  return items, rule


def usable_items(items: list[dict], report: SkipReport) -> list[dict]:
  """The items whose header reads and whose image is at least MIN_SIDE px on each side (others skipped)."""
  out = []
  for it in items:
    try:
      h, w = image_size(it["path"])
    except ImageReadError as e:
      report.skip(it["rel"], str(e), it["row"])
      continue
    if min(h, w) < MIN_SIDE:
      report.skip(it["rel"], f"image too small ({w}x{h} px): a printout needs at least {MIN_SIDE} px on each side",
                  it["row"])
      continue
    out.append(it)
  return out


def assign_splits(items: list[dict], rule: str, report: SkipReport, seed: int = 0) -> list[str]:
  """Split per item by ``rule`` (module docstring: "column", "patient", "label")."""
  if rule == "column":
    where = collections.defaultdict(set)
    for it in items:
      if it["patient_id"]:
        where[it["patient_id"]].add(it["split"])
    for pid, splits in sorted(where.items()):
      if len(splits) > 1:
        report.note("(dataset)", f"patient {pid!r} is in more than one split ({', '.join(sorted(splits))}) as "
                                 f"{LABELS_FILE}'s split column says: leakage between those splits")
    return [it["split"] for it in items]
  if rule == "patient":
    if any(not it["patient_id"] for it in items):
      n = sum(not it["patient_id"] for it in items)
      report.note("(dataset)", f"{n} row(s) without a patient id: each is its own group")
    groups = [it["patient_id"] or f"__file__{it['rel']}" for it in items]
  else:
    report.note("(dataset)", "no patient ids: each image is its own group, so leakage between splits cannot be "
                             "ruled out (add a patient column to labels.csv)")
    groups = [it["rel"] for it in items]
  return group_stratified_split([it["label"] for it in items], groups, FRACTIONS, seed=seed)


@dataclasses.dataclass
class EcgImagesConfig(tfds.core.BuilderConfig):
  """size: the stored square image's side in pixels (letterboxed)."""

  size: int = 224


class EcgImages(RawFolderBuilder, tfds.core.GeneratorBasedBuilder):
  """12-lead ECG printouts (scans, photos) letterboxed to S x S RGB, with a diagnostic class; 70/15/15 splits."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [
      EcgImagesConfig(name="224", size=224, description="letterboxed to 224x224 (white padding)"),
      EcgImagesConfig(name="448", size=448, description="letterboxed to 448x448 (white padding)"),
  ]
  DEFAULT_CONFIG_NAME = "224"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point --manual-dir at a folder of ECG printouts: <class>/<file>.png|jpg|tif, or labels.csv "
      "(file,label[,patient,split]); classes NORM, MI, STTC, CD, HYP unless classes.txt lists others. "
      "Synthetic: python -m echojax.data.synthetic ecg_images --out DIR")

  @staticmethod
  def check_manual_dir(path: str | Path) -> None:
    """Layout check run by ``python -m echojax.data.prepare`` before TFDS starts."""
    root = Path(path)
    if not (root / LABELS_FILE).is_file() and not any(p.is_dir() for p in root.iterdir()):
      raise UserError(f"{root} has neither {LABELS_FILE} nor class folders. {EcgImages.MANUAL_DOWNLOAD_INSTRUCTIONS}")

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.size
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8, encoding=PIXEL_ENCODING),
            # names come from the raw folder (classes.txt or the default), set in _split_generators; a prepared
            # folder restores them from label.labels.txt
            "label": tfds.features.ClassLabel(),
            "file_name": tfds.features.Text(),
            "patient_id": tfds.features.Text(),
            "source_height": tfds.features.Scalar(dtype=np.int32),
            "source_width": tfds.features.Scalar(dtype=np.int32),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    root = Path(dl_manager.manual_dir)
    classes = read_classes(root)
    self.info.features["label"].names = list(classes)
    items, rule = list_items(root, classes, self.report)
    items = usable_items(items, self.report)
    if not items:
      raise UserError(f"no readable images under {root} (every file was skipped)\n" + self.report.summary())
    splits = assign_splits(items, rule, self.report, self._split_seed)
    progress = tqdm(total=len(items), desc=f"ecg_images {self.builder_config.name}", unit="img")
    gens = {}
    for name in FRACTIONS:
      chosen = [it for it, s in zip(items, splits) if s == name]
      if not chosen:  # TFDS cannot write an empty split: leave it out, and say so
        self.report.note("(dataset)", f"split without usable images (left out): {name}")
        continue
      gens[name] = self._generate_examples(chosen, name, progress)
    return gens

  def _generate_examples(self, items, split, progress):
    size = self.builder_config.size
    for it in items:
      progress.update(1)
      if progress.n >= progress.total:
        progress.close()
      try:
        img = read_image(it["path"], background=PAPER)
      except ImageReadError as e:
        self.report.skip(it["rel"], str(e), it["row"])
        continue
      self.report.wrote(split)
      yield it["rel"], {"image": store(img, size), "label": it["label"], "file_name": it["rel"],
                        "patient_id": it["patient_id"], "source_height": img.shape[0], "source_width": img.shape[1]}
