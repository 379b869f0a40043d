"""UNITY Imaging echo frames -> single-screen vs dual-screen view (EchoSDNet).

Raw layout (manual_dir), either of:

* folders: ``images/<category>/<file>.png|jpg|bmp|...`` (or ``<category>/<file>`` directly in manual_dir), with an
  optional ``studies.csv`` (columns ``file,study_id``; ``file`` relative to manual_dir);
* CSV: ``labels.csv`` with columns ``file,category`` and optional ``study_id`` and ``dual`` (0/1, true/false).

A category is *dual* when the CSV's ``dual`` column says so, else when it is listed in ``dual_categories.txt``
(one category per line) in manual_dir, else when its name contains "dual". UNITY has up to 59 view categories.

Each frame is decoded once, converted to RGB and resized to 224x224 (plain resize, as EchoSDNet was trained; the
predict CLI resizes the same way). Splits are 70/15/15, stratified by the single/dual label, with every study in
exactly one split (``echojax.data.splits.group_stratified_split``). Without study ids each image is its own group,
and the summary says that leakage between splits cannot be ruled out.

Problems are recorded per file in ``self.report`` (an echojax SkipReport): unreadable images and CSV rows whose
file is missing are skipped with the reason; ``strict=True`` fails on the first.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from echojax.data.images import IMAGE_SUFFIXES, ImageReadError, read_image, resize_image
from echojax.data.labels import UNITY_CLASSES
from echojax.data.report import RawFolderBuilder, SkipReport
from echojax.data.splits import group_stratified_split
from echojax.errors import UserError

SIZE = 224
FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
TRUE_WORDS = {"1", "true", "yes", "dual", "y", "t"}
FALSE_WORDS = {"0", "false", "no", "single", "n", "f"}


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict]:
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    cols = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in required if c not in cols]
    if missing:
      raise UserError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(cols) or 'none'}. "
                      f"The file needs columns {', '.join(required)}.")
    return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]


def list_items(root: Path, report: SkipReport) -> list[dict]:
  """Rows {path, rel, category, study_id, dual} from either layout (no image is decoded here)."""
  root = Path(root)
  if not root.is_dir():
    raise UserError(f"UNITY manual dir {root} does not exist: point --manual-dir at a folder with images/<category>/* "
                    "or labels.csv (see tfds_builders/unity)")
  dual_list = set()
  if (root / "dual_categories.txt").exists():
    dual_list = {l.strip() for l in (root / "dual_categories.txt").read_text().splitlines() if l.strip()}

  def is_dual(cat: str, explicit: str | None, rel: str, row: int | None) -> bool | None:
    if explicit:
      v = explicit.lower()
      if v in TRUE_WORDS:
        return True
      if v in FALSE_WORDS:
        return False
      report.skip(rel, f"dual column is {explicit!r}; use 0/1 or true/false", row)
      return None
    return cat in dual_list or "dual" in cat.lower()

  items = []
  if (root / "labels.csv").exists():
    for r, row in enumerate(_read_csv(root / "labels.csv", ("file", "category")), start=1):
      rel, cat = row["file"], row["category"]
      if not cat:
        report.skip(rel or "labels.csv", "empty category", r)
        continue
      path = root / rel
      if not path.exists():
        report.skip(rel, "image file not found (listed in labels.csv)", r)
        continue
      dual = is_dual(cat, row.get("dual"), rel, r)
      if dual is not None:
        items.append(dict(path=path, rel=rel, category=cat, study_id=row.get("study_id", ""), dual=dual))
    return items

  base = root / "images" if (root / "images").is_dir() else root
  studies = {}
  if (root / "studies.csv").exists():
    studies = {row["file"]: row["study_id"] for row in _read_csv(root / "studies.csv", ("file", "study_id"))}
  for cat_dir in sorted(p for p in base.iterdir() if p.is_dir()):
    for path in sorted(cat_dir.iterdir()):
      if path.suffix.lower() not in IMAGE_SUFFIXES:
        if path.is_file() and not path.name.startswith("."):
          report.note(str(path.relative_to(root)), "ignored: not an image file extension")
        continue
      rel = path.relative_to(root).as_posix()
      items.append(dict(path=path, rel=rel, category=cat_dir.name, study_id=studies.get(rel, ""),
                        dual=is_dual(cat_dir.name, None, rel, None)))
  if not items:
    raise UserError(f"no images found under {base}: expected images/<category>/<file>.png (or .jpg/.bmp) "
                    "or a labels.csv with columns file,category")
  return items


def assign_splits(items: list[dict], report: SkipReport, seed: int = 0) -> list[str]:
  groups = [it["study_id"] or f"__image__{it['rel']}" for it in items]
  if not any(it["study_id"] for it in items):
    report.note("(dataset)", "no study ids: each image is its own group, so leakage between splits cannot be ruled out")
  return group_stratified_split([it["dual"] for it in items], groups, FRACTIONS, seed=seed)


def stored_image(path: str | Path, size: int = SIZE) -> np.ndarray:
  """One image file as this dataset stores it (plain resize; what ``echojax.predict`` feeds a model trained on it)."""
  return resize_image(read_image(path), size)


class Unity(RawFolderBuilder, tfds.core.GeneratorBasedBuilder):
  """UNITY echo frames with single/dual label, 224x224 RGB, study-disjoint stratified 70/15/15 splits."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point --manual-dir at a UNITY export: images/<category>/<file>.png, or labels.csv (file,category[,study_id]"
      "[,dual]). Synthetic: python -m echojax.data.synthetic unity --out DIR")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(SIZE, SIZE, 3), dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=list(UNITY_CLASSES)),
            "category": tfds.features.Text(),
            "study_id": tfds.features.Text(),
            "file_name": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    items = list_items(Path(dl_manager.manual_dir), self.report)
    splits = assign_splits(items, self.report, self._split_seed)
    return {name: self._generate_examples([it for it, s in zip(items, splits) if s == name], name)
            for name in FRACTIONS}

  def _generate_examples(self, items, split):
    for it in items:
      try:
        img = read_image(it["path"])
      except ImageReadError as e:
        self.report.skip(it["rel"], str(e))
        continue
      self.report.wrote(split)
      yield it["rel"], {"image": resize_image(img, SIZE), "label": int(it["dual"]), "category": it["category"],
                        "study_id": it["study_id"], "file_name": it["rel"]}
