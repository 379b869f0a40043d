"""The LVAD cohort: phantom generator (hospital-style cines, outcome tied to EF) and the builder (labels.csv +
studies/<patient>/ cines -> motion-masked 112 px clips with the patient id; every bad input a named skip)."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from echojax.data.datasets import DATASETS
from echojax.data.synthetic import GENERATORS
from echojax.data.synthetic import lvad as gen
from tfds_builders.lvad import Lvad, LvadConfig, mask_cine


def _rows(path):
  return list(csv.DictReader(open(path)))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
  return gen.generate(tmp_path_factory.mktemp("lvad") / "raw", 5, seed=3, progress=False)


def _build(raw, data_dir, config="112", strict=False):
  b = Lvad(data_dir=str(data_dir), config=config, strict=strict)
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(raw)))
  return b


def _records(b):
  src = b.as_data_source("train")
  return {src[i]["file_name"].decode(): src[i] for i in range(len(src))}


def test_generator_layout_determinism_and_outcome_link(cohort, tmp_path):
  assert "lvad" in GENERATORS and DATASETS["lvad"].default_config == "112"
  labels, truth = _rows(cohort / "labels.csv"), _rows(cohort / "phantom_truth.csv")
  assert [r["patient_id"] for r in labels] == [f"lvad{i:03d}" for i in range(5)]
  assert {r["format"] for r in truth} == {"avi", "dcm"}  # patient 3 is a DICOM patient
  for r in truth:
    assert (cohort / r["file"]).is_file() and r["file"].startswith(f"studies/{r['patient_id']}/")
  again = gen.generate(tmp_path / "again", 3, seed=3, progress=False)  # patient i is the same whatever the count
  assert _rows(again / "labels.csv") == labels[:3]
  first = truth[0]["file"]
  assert (again / first).read_bytes() == (cohort / first).read_bytes()
  p = gen.outcome_probability(np.array([10.0, gen.EF_MID, 40.0]))
  assert p[0] > 0.8 and abs(p[1] - 0.5) < 1e-9 and p[2] < 0.15 and (np.diff(p) < 0).all()  # lower EF, likelier death


def test_builder_masks_every_cine_and_keeps_the_patient(cohort, tmp_path):
  b = _build(cohort, tmp_path / "tfds")
  recs = _records(b)
  truth = _rows(cohort / "phantom_truth.csv")
  died = {r["patient_id"]: int(r["died"]) for r in _rows(cohort / "labels.csv")}
  assert sorted(recs) == sorted(r["file"] for r in truth) and list(b.info.splits) == ["train"]
  for name, ex in recs.items():
    pid = ex["patient_id"].decode()
    assert name.startswith(f"studies/{pid}/") and int(ex["died"]) == died[pid]
    v = ex["video"]
    assert v.shape[1:] == (112, 112, 3) and v.shape[0] == int(ex["num_frames"]) >= 32
    assert (v[..., 0] == v[..., 1]).all() and (v[..., 0] == v[..., 2]).all()  # grey, as EchoNet's AVIs
    x0, y0, x1, y1 = ex["mask_box"]
    assert ex["mask_method"].decode() == "flow" and (ex["source_height"], ex["source_width"]) == gen.NATIVE
    # the mask is the heart's sector: not the text above it, the depth scale beside it or the ECG below it
    sx, sy = gen.SECTOR_XY
    assert sx - 10 <= x0 and sy - 10 <= y0 and x1 <= sx + gen.SECTOR_SIDE + 10 and y1 < gen.ECG_BAND[0]
    assert y0 > 25 and x1 < gen.NATIVE[1] - 60  # below the header lines, left of the depth scale
    assert v[:, :4, :4].max() == 0  # outside the hull: black
    assert (Path(b.data_dir) / "previews" / pid / f"{Path(name).name}.png").stat().st_size > 5000
  assert not b.report.skipped


def test_no_mask_config_keeps_the_whole_frame(cohort, tmp_path):
  b = _build(cohort, tmp_path / "tfds", config="112_nomask")
  ex = next(iter(_records(b).values()))
  assert list(ex["mask_box"]) == [0, 0, gen.NATIVE[1], gen.NATIVE[0]] and ex["mask_method"].decode() == "none"
  pad = (gen.NATIVE[1] - gen.NATIVE[0]) / 2 * 112 / gen.NATIVE[1]  # black bars above and below
  text_rows = ex["video"][0, int(pad) + 1:int(pad) + 6, :40]  # the burned-in site name, top left
  assert text_rows.max() > 40  # thin text, area-averaged to 112 px


def test_bad_labels_and_studies_are_named_skips(cohort, tmp_path):
  raw = tmp_path / "raw"
  shutil.copytree(cohort, raw)
  with open(raw / "labels.csv", "a") as f:
    f.write("lvad001,0,50,F,2\n")  # a repeated patient
    f.write("lvad900,maybe,50,F,2\n")  # died not 0/1
    f.write(",1,50,F,2\n")  # no id
    f.write("lvad901,1,50,F,2\n")  # no studies folder
    f.write("lvad902,0,50,F,2\n")  # a folder with no cine
  (raw / "studies" / "lvad902").mkdir()
  (raw / "studies" / "lvad902" / "notes.txt").write_text("echo report pending")
  (raw / "studies" / "stranger").mkdir()  # a folder no labels row names
  (raw / "studies" / "lvad000" / "a4c_9.avi").write_bytes(b"not a video" * 50)
  b = _build(raw, tmp_path / "tfds")
  reasons = {(i.file, i.row): i.reason for i in b.report.skipped}
  assert "listed twice" in reasons[("labels.csv", 6)] and "use 1 (died) or 0" in reasons[("labels.csv", 7)]
  assert reasons[("labels.csv", 8)] == "no patient_id"
  assert reasons[("studies/lvad901", None)] == "patient has no studies folder"
  assert reasons[("studies/lvad902", None)] == "no cine in the patient's studies folder"
  assert "no row in labels.csv" in reasons[("studies/stranger", None)]
  assert reasons[("studies/lvad000/a4c_9.avi", None)].startswith("unreadable cine")
  assert any(n.file == "studies/lvad902/notes.txt" for n in b.report.notes)
  assert len(_records(b)) == len(_rows(cohort / "phantom_truth.csv"))
  with pytest.raises(Exception, match="listed twice"):
    _build(raw, tmp_path / "strict", strict=True)


def test_mask_on_a_real_dicom_cine():
  pytest.importorskip("pydicom")
  from pydicom.data import get_testdata_file

  from echojax.data import ingest

  path = get_testdata_file("examples_ybr_color.dcm")
  if path is None:
    pytest.skip("pydicom test file examples_ybr_color.dcm not available in this pydicom install")
  frames = ingest.read_cine(path).frames
  clip, sec = mask_cine(frames, LvadConfig(name="t"))
  assert clip.shape == (len(frames), 112, 112, 3) and sec.method == "flow"
  x0, y0, x1, y1 = sec.box
  assert (x1 - x0) * (y1 - y0) > 0.1 * frames.shape[1] * frames.shape[2]
