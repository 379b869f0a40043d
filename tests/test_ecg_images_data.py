"""ECG printouts: the ecg_images builder (both layouts, odd inputs, named skips, splits), its phantom generator
(determinism, class signs measured on the synthetic signals) and the real printouts in ../shared/fixtures."""

import csv
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from echojax.data.datasets import DATASETS
from echojax.data.labels import ECG_SUPERCLASSES
from echojax.data.synthetic import GENERATORS
from echojax.data.synthetic import ecg_images as gen
from echojax.data.synthetic.__main__ import main as synthetic_main
from echojax.data.synthetic.ecg import LEADS_12, ecg12_params, synthesize_12lead
from echojax.errors import UserError
from tfds_builders.ecg_images import EcgImages

DPI = (60.0, 80.0)  # small pages keep the test fast; the layout and the classes' signs do not depend on it
FS = gen.FS


def _build(raw, data_dir, strict=False, config="224"):
  b = EcgImages(data_dir=str(data_dir), config=config, strict=strict)
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(raw)))
  return b


def _records(b) -> dict:
  """file_name -> (split, example) over every split of a built dataset."""
  out = {}
  for split in b.info.splits:
    src = b.as_data_source(split)
    for i in range(len(src)):
      ex = src[i]
      out[ex["file_name"].decode()] = (split, ex)
  return out


@pytest.fixture(scope="module")
def raw_csv(tmp_path_factory):
  return gen.generate(tmp_path_factory.mktemp("ecg_csv"), num_per_class=4, seed=1, dpi=DPI)


# -- the builder on phantom sets ------------------------------------------------------------------------------------

def test_csv_layout_patient_level_splits(raw_csv, tmp_path):
  rows = list(csv.DictReader(open(raw_csv / "labels.csv")))
  assert len(rows) == 20 and {r["label"] for r in rows} == set(ECG_SUPERCLASSES)
  b = _build(raw_csv, tmp_path)
  assert not b.report.skipped
  assert b.info.features["label"].names == list(ECG_SUPERCLASSES)
  recs = _records(b)
  assert len(recs) == 20 and set(b.info.splits) == {"train", "val", "test"}
  by_file = {r["file"]: r for r in rows}
  patient_split = {}
  for name, (split, ex) in recs.items():
    assert ex["image"].shape == (224, 224, 3) and ex["image"].dtype == np.uint8
    assert ECG_SUPERCLASSES[ex["label"]] == by_file[name]["label"]
    pid = ex["patient_id"].decode()
    assert pid == by_file[name]["patient"]
    assert patient_split.setdefault(pid, split) == split, f"patient {pid} in {split} and {patient_split[pid]}"
    with Image.open(raw_csv / name) as im:
      assert (int(ex["source_width"]), int(ex["source_height"])) == im.size
  # the page is wider than tall: white bands above and below the printout
  img = recs[rows[0]["file"]][1]["image"]
  assert img[:20].min() == 255 and img[-20:].min() == 255 and img[100:124].mean() < 250


def test_folder_layout_and_the_448_config(tmp_path):
  raw = gen.generate(tmp_path / "raw", num_per_class=1, seed=2, layout="folders", dpi=DPI)
  assert not (raw / "labels.csv").exists()
  assert sorted(p.name for p in raw.iterdir() if p.is_dir()) == sorted(ECG_SUPERCLASSES)
  b = _build(raw, tmp_path / "tfds", config="448")
  recs = _records(b)
  assert len(recs) == 5
  for name, (_, ex) in recs.items():
    assert ex["image"].shape == (448, 448, 3)
    assert ECG_SUPERCLASSES[ex["label"]] == name.split("/")[0] and ex["patient_id"] == b""
  assert any("no patient ids" in i.reason for i in b.report.notes)


def test_split_column_wins_and_a_bad_value_names_the_row(raw_csv, tmp_path):
  raw = tmp_path / "raw"
  shutil.copytree(raw_csv, raw)
  rows = list(csv.DictReader(open(raw / "labels.csv")))
  names = ["train", "Validation", "TEST", "val"]
  for i, r in enumerate(rows):
    r["split"] = names[i % 4]
  cols = ["file", "label", "patient", "split"]
  with open(raw / "labels.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
  b = _build(raw, tmp_path / "tfds")
  recs = _records(b)
  want = {"train": "train", "validation": "val", "test": "test", "val": "val"}
  assert {r["file"]: want[r["split"].lower()] for r in rows} == {k: v[0] for k, v in recs.items()}
  assert any("more than one split" in i.reason for i in b.report.notes)  # the given splits split a patient
  rows[2]["split"] = "holdout"
  with open(raw / "labels.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
  with pytest.raises(UserError, match=r"row 3 .*'holdout'"):
    _build(raw, tmp_path / "tfds2")


def _odd_inputs(root):
  """Class folders holding every kind of input the builder must take or name."""
  for c in ("NORM", "MI", "CD", "AFIB"):
    (root / c).mkdir(parents=True)
  Image.fromarray(np.full((200, 800, 3), 100, np.uint8)).save(root / "NORM" / "wide.png")
  ramp = np.tile(np.linspace(0, 65535, 300).astype(np.uint16), (200, 1))
  Image.fromarray(ramp).save(root / "NORM" / "grey16.png")  # 16-bit grey (mode I;16)
  import cv2

  rgb16 = np.zeros((160, 240, 3), np.uint16)
  rgb16[..., 2] = 40000  # red in OpenCV's BGR order
  cv2.imwrite(str(root / "MI" / "rgb16.tif"), rgb16)
  rgba = np.zeros((200, 200, 4), np.uint8)
  rgba[:, :100] = (200, 0, 0, 255)  # left half opaque red, right half transparent black
  Image.fromarray(rgba, "RGBA").save(root / "MI" / "alpha.png")
  Image.fromarray(np.full((150, 150), 60, np.uint8), "L").save(root / "CD" / "grey.jpg", quality=95)
  stored = np.full((160, 320, 3), 255, np.uint8)
  stored[:, :100] = 0  # black on the left as stored; orientation 6 shows it rotated 90 deg clockwise: black on top
  exif = Image.Exif()
  exif[0x0112] = 6
  Image.fromarray(stored).save(root / "CD" / "exif6.jpg", exif=exif, quality=95)
  (root / "CD" / "garbage.png").write_bytes(b"this is not a png")
  (root / "CD" / "empty.jpg").write_bytes(b"")
  Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(root / "NORM" / "tiny.png")
  Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(root / "AFIB" / "other.png")
  (root / "NORM" / "notes.txt").write_text("not an image")


def test_odd_inputs_are_read_and_bad_files_are_named_skips(tmp_path):
  root = tmp_path / "raw"
  _odd_inputs(root)
  b = _build(root, tmp_path / "tfds")
  recs = {k: v[1] for k, v in _records(b).items()}
  assert set(recs) == {"NORM/wide.png", "NORM/grey16.png", "MI/rgb16.tif", "MI/alpha.png", "CD/grey.jpg",
                       "CD/exif6.jpg"}
  wide = recs["NORM/wide.png"]["image"]  # 200x800 -> 56x224 of printout between white bands
  assert wide[:80].min() == 255 and wide[-80:].min() == 255 and np.abs(wide[90:134].astype(int) - 100).max() <= 1
  g16 = recs["NORM/grey16.png"]["image"]
  assert g16[112, 5, 0] < 10 < 245 < g16[112, 218, 0] and (g16[..., 0] == g16[..., 2]).all()
  assert np.abs(recs["MI/rgb16.tif"]["image"][112, 112].astype(int) - (156, 0, 0)).max() <= 1
  alpha = recs["MI/alpha.png"]["image"]
  assert (alpha[:, 150] == 255).all() and np.abs(alpha[112, 50].astype(int) - (200, 0, 0)).max() <= 1
  grey = recs["CD/grey.jpg"]["image"]
  assert np.abs(grey.astype(int) - 60).max() <= 2
  ex6 = recs["CD/exif6.jpg"]
  assert (int(ex6["source_height"]), int(ex6["source_width"])) == (320, 160)
  img = ex6["image"]  # tall: white bands left and right, the black third at the top
  assert img[:, :40].min() == 255 and img[:60, 112].max() < 30 and img[150:, 112].min() > 225
  reasons = {i.file: i.reason for i in b.report.skipped}
  assert "not a readable image" in reasons["CD/garbage.png"]
  assert reasons["CD/empty.jpg"] == "empty file (0 bytes)"
  assert "image too small (40x40 px)" in reasons["NORM/tiny.png"]
  assert "unknown label 'AFIB'" in reasons["AFIB/other.png"] and "NORM, MI, STTC, CD, HYP" in reasons["AFIB/other.png"]
  assert any("'AFIB' is not a class: 1 file" in i.reason for i in b.report.notes)
  assert any(i.file == "NORM/notes.txt" for i in b.report.notes)
  with pytest.raises(UserError, match="AFIB/other.png"):
    _build(root, tmp_path / "strict", strict=True)


def test_classes_txt_sets_the_class_list_and_csv_rows_are_named(tmp_path):
  root = tmp_path / "raw"
  (root / "images").mkdir(parents=True)
  for i in range(5):
    Image.fromarray(np.full((100, 140, 3), 40 * i, np.uint8)).save(root / "images" / f"{i}.png")
  (root / "classes.txt").write_text("afib\nsinus\n")
  (root / "labels.csv").write_text("\ufefffile,Label,patient_id\nimages/0.png,SINUS,a\nimages/1.png,AFib,b\n"
                                   "images/2.png,NORM,c\nimages/missing.png,afib,d\n../x.png,afib,e\n"
                                   "images/0.png,sinus,a\nimages/3.png,afib,\nimages/4.png,,f\n")
  b = _build(root, tmp_path / "tfds")
  assert b.info.features["label"].names == ["afib", "sinus"]
  recs = {k: v[1] for k, v in _records(b).items()}
  assert {k: int(v["label"]) for k, v in recs.items()} == {"images/0.png": 1, "images/1.png": 0, "images/3.png": 0}
  skipped = {(i.file, i.row): i.reason for i in b.report.skipped}
  assert "unknown label 'NORM'" in skipped["images/2.png", 3] and "afib, sinus" in skipped["images/2.png", 3]
  assert "not found" in skipped["images/missing.png", 4]
  assert "outside the raw folder" in skipped["../x.png", 5]
  assert "listed twice" in skipped["images/0.png", 6]
  assert skipped["images/4.png", 8] == "empty label cell in labels.csv"
  assert any("without a patient id" in i.reason for i in b.report.notes)
  (root / "classes.txt").write_text("afib\nAFIB\n")
  with pytest.raises(UserError, match="listed twice"):
    _build(root, tmp_path / "tfds2")


# -- the generator ----------------------------------------------------------------------------------------------

def test_generator_is_registered_deterministic_and_item_stable(tmp_path):
  assert "ecg_images" in GENERATORS and DATASETS["ecg_images"].default_config == "224"
  synthetic_main(["ecg_images", "--out", str(tmp_path / "a"), "--num-per-class", "1", "--dpi", "60"])
  synthetic_main(["ecg_images", "--out", str(tmp_path / "b"), "--num-per-class", "2", "--dpi", "60"])
  a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / "images").iterdir())
  assert len(a) == 5
  for rel in a:  # same seed: the same bytes, and item i of a class does not depend on --num-per-class
    assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
  one = gen.render_printout("CD", np.random.default_rng(4), dpi=60)
  two = gen.render_printout("CD", np.random.default_rng(4), dpi=60)
  assert np.array_equal(one[0], two[0]) and np.array_equal(one[1], two[1])
  assert one[0].shape == (int(gen.PAGE_MM[1] / 25.4 * 60), int(gen.PAGE_MM[0] / 25.4 * 60), 3)  # A4 at 60 dpi
  with pytest.raises(UserError, match="num-per-class"):
    gen.generate(tmp_path / "c", num_per_class=0)


L = {n: i for i, n in enumerate(LEADS_12)}


def _clean(label, seed, variant=None):
  p = ecg12_params(label, np.random.default_rng([7, seed]), variant)
  hr = float(np.random.default_rng(seed).uniform(*gen.HR_RANGE))
  x, info = synthesize_12lead(p, 10.0, FS, hr, rng=seed, noise_mv=0.0, baseline_mv=0.0)
  return x, info["r_times"][1:-1], p["qrs_end_s"]


def _qrs_ms(x, r):
  """QRS duration: the span, within -80..+150 ms of each R peak, where the spatial velocity (sum over the 12 leads
  of |dx/dt|) exceeds 8% of its peak; median over the beats."""
  v = np.abs(np.diff(x, axis=1)).sum(0)
  spans = []
  for k in (r * FS).astype(int):
    seg = v[k - 40:k + 75]
    above = np.nonzero(seg > 0.08 * seg.max())[0]
    spans.append((above[-1] - above[0]) / FS * 1000)
  return float(np.median(spans))


def _at(x, r, lead, offset_s):
  return float(np.median([x[L[lead], int(round((t + offset_s) * FS))] for t in r]))


def _q(x, r, lead):  # deepest point 60..5 ms before the R peak
  return float(np.median([x[L[lead], int((t - 0.06) * FS):int((t - 0.005) * FS)].min() for t in r]))


def test_the_classes_show_their_signs_on_the_signals():
  seeds = range(8)
  qrs = {c: [_qrs_ms(*_clean(c, s)[:2]) for s in seeds] for c in ECG_SUPERCLASSES}
  assert min(qrs["CD"]) > 120 and max(max(qrs[c]) for c in ("NORM", "MI", "STTC", "HYP")) < 115, qrs
  sok = {c: [gen.sokolow_lyon_mv(*_clean(c, s)[:2]) for s in seeds] for c in ("NORM", "HYP")}
  assert min(sok["HYP"]) > 3.5 > max(sok["NORM"]), sok
  norm = [_clean("NORM", s) for s in seeds]
  for variant, lead in (("inferior", "aVF"), ("anterior", "V3"), ("lateral", "aVL")):
    mi = [_clean("MI", s, variant) for s in seeds]
    # pathological Q: deeper than any normal q in that lead; ST 40 ms after J raised above any normal one
    assert max(_q(x, r, lead) for x, r, _ in mi) < min(_q(x, r, lead) for x, r, _ in norm) - 0.05, variant
    assert min(_at(x, r, lead, j + 0.04) for x, r, j in mi) > max(_at(x, r, lead, j + 0.04) for x, r, j in norm), \
        variant
  sttc = [_clean("STTC", s) for s in seeds]
  assert max(_at(x, r, "V5", j + 0.04) for x, r, j in sttc) < -0.1 < 0.0 < min(_at(x, r, "V5", j + 0.04)
                                                                           for x, r, j in norm)
  def t_min(x, r, j):  # the lowest point of V5 from J to J + 400 ms: an inverted T
    return float(np.median([x[L["V5"], int((t + j) * FS):int((t + j + 0.4) * FS)].min() for t in r]))

  assert max(t_min(*c) for c in sttc) < -0.2 and min(t_min(*c) for c in norm) > -0.05


def test_config_without_data_dir_gets_the_phantom_set():
  from echojax.data.prepare import ensure_synthetic

  data_dir = ensure_synthetic("ecg_images", None, num=1, verbose=False)
  b = tfds.builder("ecg_images", config="224", data_dir=str(data_dir))
  assert sum(s.num_examples for s in b.info.splits.values()) == 5
  assert b.info.features["label"].names == list(ECG_SUPERCLASSES)


# -- real printouts -------------------------------------------------------------------------------------------------

def test_real_printouts_all_become_records(fixtures_dir, tmp_path):
  src = sorted(p for p in (fixtures_dir / "ecg_images").glob("ecg*") if p.suffix.lower() in (".png", ".jpg", ".bmp"))
  if len(src) != 6:
    pytest.skip(f"expected the 6 real ECG printouts in {fixtures_dir / 'ecg_images'}, found {len(src)}")
  root = tmp_path / "raw"
  for i, p in enumerate(src):  # any class: the test is that every real file reads, not what it shows
    (root / ECG_SUPERCLASSES[i % 5]).mkdir(parents=True, exist_ok=True)
    shutil.copy(p, root / ECG_SUPERCLASSES[i % 5] / p.name)
  b = _build(root, tmp_path / "tfds")
  assert not b.report.skipped
  recs = {k.split("/")[1]: v[1] for k, v in _records(b).items()}
  assert sorted(recs) == [p.name for p in src]
  for p in src:
    ex = recs[p.name]
    with Image.open(p) as im:
      w, h = im.size
    assert (int(ex["source_width"]), int(ex["source_height"])) == (w, h) and ex["image"].shape == (224, 224, 3)
    pad = round((224 - 224 * h / w) / 2) - 1  # every printout is landscape: white bands above and below
    assert ex["image"][:pad].min() == 255 and ex["image"][-pad:].min() == 255
    assert ex["image"][112].std() > 5  # the printout itself is in the middle
