"""UNITY phantoms and builder: layouts, single/dual labels, study-disjoint stratified splits, bad input."""

import collections
import csv

import numpy as np
import pytest
import tensorflow_datasets as tfds

from echojax.data.images import read_image
from echojax.data.report import SkipReport
from echojax.data.splits import group_stratified_split
from echojax.data.synthetic import unity as gen
from echojax.errors import UserError
from tfds_builders.unity import Unity


def _build(raw, data_dir, strict=False):
  b = Unity(data_dir=str(data_dir), file_format="array_record", strict=strict)
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(raw)))
  return b


@pytest.fixture(scope="module")
def raw_folders(tmp_path_factory):
  return gen.generate(tmp_path_factory.mktemp("unity_raw"), num_studies=16, seed=3, images_per_study=3)


def test_phantoms_are_800x600_exports_with_dual_side_by_side(raw_folders):
  files = sorted((raw_folders / "images").glob("*/*.png"))
  assert len(files) == 48
  img = read_image(files[0])
  assert img.shape == (600, 800, 3)
  dual = [f for f in files if "dual" in f.parent.name]
  single = [f for f in files if "dual" not in f.parent.name]
  assert dual and single
  # a dual capture has two sectors: bright tissue in both halves of the screen, with a dark gap near the apexes
  def halves(f):
    g = read_image(f)[80:400].mean(axis=(0, 2))
    return g[100:300].mean(), g[500:700].mean(), g[380:420].mean()
  l, r, _ = halves(dual[0])
  assert l > 10 and r > 10
  # deterministic for a seed
  again = gen.render("08_a4ch-full", np.random.default_rng(5))
  assert np.array_equal(again, gen.render("08_a4ch-full", np.random.default_rng(5)))


def test_builder_splits_stratified_and_study_disjoint(raw_folders, tmp_path):
  b = _build(raw_folders, tmp_path)
  assert not b.report.skipped
  studies = {}
  labels = collections.Counter()
  for split in ("train", "val", "test"):
    src = b.as_data_source(split)
    for i in range(len(src)):
      ex = src[i]
      assert ex["image"].shape == (224, 224, 3) and ex["image"].dtype == np.uint8
      sid = ex["study_id"].decode()
      assert studies.setdefault(sid, split) == split, f"study {sid} leaks into {split} and {studies[sid]}"
      cat = ex["category"].decode()
      assert ex["label"] == int("dual" in cat)
      labels[split, int(ex["label"])] += 1
  n = {s: labels[s, 0] + labels[s, 1] for s in ("train", "val", "test")}
  assert sum(n.values()) == 48
  assert n["train"] > n["val"] and n["train"] > n["test"]
  assert all(labels[s, 1] > 0 for s in ("train", "val", "test")), labels


def test_group_split_proportions_and_no_leakage():
  rng = np.random.default_rng(0)
  groups = [f"s{i // 3}" for i in range(1275)]
  labels = list(rng.random(1275) < 0.3)
  splits = group_stratified_split(labels, groups, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=1)
  by_group = collections.defaultdict(set)
  for g, s in zip(groups, splits):
    by_group[g].add(s)
  assert all(len(v) == 1 for v in by_group.values())
  count = collections.Counter(splits)
  assert abs(count["train"] / 1275 - 0.7) < 0.02 and abs(count["test"] / 1275 - 0.15) < 0.02
  for s in ("train", "val", "test"):
    frac_dual = sum(l for l, t in zip(labels, splits) if t == s) / count[s]
    assert abs(frac_dual - np.mean(labels)) < 0.03
  assert splits == group_stratified_split(labels, groups, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=1)


def test_csv_layout_and_bad_rows_are_named(tmp_path):
  raw = gen.generate(tmp_path / "raw", num_studies=6, seed=1, layout="csv")
  rows = list(csv.DictReader(open(raw / "labels.csv")))
  (raw / rows[0]["file"]).write_bytes(b"not a png at all")  # corrupt image
  rows.append({"file": "images/gone.png", "category": "08_a4ch-full", "study_id": "x"})  # missing file
  with open(raw / "labels.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=["file", "category", "study_id"])
    w.writeheader()
    w.writerows(rows)
  b = _build(raw, tmp_path / "tfds")
  reasons = {i.file: i.reason for i in b.report.skipped}
  assert "not a readable image" in reasons[rows[0]["file"]]
  assert "image file not found" in reasons["images/gone.png"]
  assert sum(b.report.counts.values()) == 18 - 1
  with pytest.raises(UserError, match="gone.png"):
    _build(raw, tmp_path / "tfds_strict", strict=True)


def test_missing_column_and_empty_folder_errors(tmp_path):
  (tmp_path / "labels.csv").write_text("filename,view\na.png,x\n")
  with pytest.raises(UserError, match="missing column"):
    from tfds_builders.unity.unity_dataset_builder import list_items
    list_items(tmp_path, SkipReport())
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(UserError, match="no images found"):
    list_items(empty, SkipReport())
