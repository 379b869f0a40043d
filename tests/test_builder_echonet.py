"""echonet_dynamic TFDS builder + prepare command: clean phantoms, deliberately broken raw folders, strict mode,
record read speed, and ensure_synthetic."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from echojax.data import echonet
from echojax.data.prepare import REPORT_FILE, STATS_FILE, prepare
from echojax.data.synthetic import echonet as gen
from echojax.data.video import read_video, write_avi
from echojax.errors import UserError
from tests.helpers.files import read_csv, write_csv

REPO = Path(__file__).resolve().parent.parent
N_BROKEN = 10


@pytest.fixture(scope="session")
def clean_raw(tmp_path_factory):
  return gen.generate(tmp_path_factory.mktemp("echonet_clean"), 8, seed=5, progress=False)


@pytest.fixture(scope="session")
def clean_prepared(clean_raw, tmp_path_factory):
  out = tmp_path_factory.mktemp("echonet_clean_tfds")
  return prepare("echonet_dynamic", clean_raw, out, "112", verbose=False), out


@pytest.fixture(scope="session")
def broken(tmp_path_factory):
  """A raw folder with one real-data quirk per row; returns (raw dir, {quirk: file name}, original tracings)."""
  raw = gen.generate(tmp_path_factory.mktemp("echonet_broken"), N_BROKEN, seed=9, progress=False)
  orig_tr = echonet.read_tracings(raw)
  rows = read_csv(raw / "FileList.csv")
  header = list(rows[0])
  tr_rows = read_csv(raw / "VolumeTracings.csv")
  by = {}
  order = ["missing", "corrupt", "nan_ef", "lower_split", "big", "short", "avi_name", "no_tracings", "fps",
           "text_ef"]
  for quirk, row in zip(order, rows):
    by[quirk] = row["FileName"]
  vid = lambda q: raw / "Videos" / f"{by[q]}.avi"  # noqa: E731
  vid("missing").unlink()
  vid("corrupt").write_bytes(b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(range(256)) * 8)
  rows[order.index("nan_ef")]["EF"] = "NaN"
  rows[order.index("text_ef")]["EF"] = "n/a"
  rows[order.index("lower_split")]["Split"] = "train"
  frames, fps = read_video(vid("big"))
  big = np.stack([cv2.resize(f, (1024, 768), interpolation=cv2.INTER_LINEAR) for f in frames])
  write_avi(vid("big"), big, fps)
  rows[order.index("big")].update(FrameHeight=768, FrameWidth=1024)
  for r in tr_rows:  # tracings of the big video in its own pixel coordinates
    if r["FileName"] == f"{by['big']}.avi":
      for k, s in (("X1", 1024 / 112), ("X2", 1024 / 112), ("Y1", 768 / 112), ("Y2", 768 / 112)):
        r[k] = repr(float(r[k]) * s)
  frames, fps = read_video(vid("short"))
  write_avi(vid("short"), frames[:20], fps)
  rows[order.index("short")]["NumberOfFrames"] = 20
  rows[order.index("avi_name")]["FileName"] = by["avi_name"] + ".avi"
  tr_rows = [r for r in tr_rows if r["FileName"] != f"{by['no_tracings']}.avi"]
  rows[order.index("fps")]["FPS"] = str(float(rows[order.index("fps")]["FPS"]) + 17)
  write_csv(raw / "FileList.csv", rows, header)
  write_csv(raw / "VolumeTracings.csv", tr_rows, ["FileName", "X1", "Y1", "X2", "Y2", "Frame"])
  return raw, by, orig_tr, {r["FileName"].removesuffix(".avi"): r for r in rows}


@pytest.fixture(scope="session")
def broken_prepared(broken, tmp_path_factory):
  raw = broken[0]
  out = tmp_path_factory.mktemp("echonet_broken_tfds")
  return prepare("echonet_dynamic", raw, out, "112", verbose=False)


def _source(version_dir, split):
  import tensorflow_datasets as tfds

  return tfds.builder_from_directory(str(version_dir)).as_data_source(split=split)


def _all_records(version_dir):
  import tensorflow_datasets as tfds

  out = {}
  for split in tfds.builder_from_directory(str(version_dir)).info.splits:
    src = _source(version_dir, split)
    for i in range(len(src)):
      ex = src[i]
      name = ex["file_name"].decode() if isinstance(ex["file_name"], bytes) else ex["file_name"]
      out[name] = (split, ex)
  return out


def test_clean_build_counts_and_features(clean_raw, clean_prepared):
  version_dir, _ = clean_prepared
  rows = read_csv(clean_raw / "FileList.csv")
  want = {s: sum(r["Split"] == s.upper() for r in rows) for s in ("train", "val", "test")}
  report = json.loads((version_dir / REPORT_FILE).read_text())
  assert report["counts"] == {k: v for k, v in want.items() if v}
  assert report["skipped"] == [] and report["notes"] == []
  recs = _all_records(version_dir)
  assert len(recs) == len(rows)
  tracings = echonet.read_tracings(clean_raw)
  for r in rows:
    split, ex = recs[r["FileName"]]
    assert split == r["Split"].lower()
    v = ex["video"]
    assert v.dtype == np.uint8 and v.shape == (int(r["NumberOfFrames"]), 112, 112, 3)
    assert np.array_equal(v, read_video(clean_raw / "Videos" / f"{r['FileName']}.avi")[0])
    assert np.float32(ex["ef"]) == np.float32(float(r["EF"]))
    assert ex["fps"] == pytest.approx(float(r["FPS"])) and ex["num_frames"] == len(v)
    pair = echonet.ed_es(tracings[r["FileName"]])
    assert (ex["ed_frame"], ex["es_frame"]) == (pair.ed_frame, pair.es_frame)
    assert ex["ed_trace"].dtype == np.float32 and ex["ed_trace"].shape == (21, 4)
    assert np.allclose(ex["ed_trace"], pair.ed_trace, atol=1e-3)
    for k in ("ef", "esv", "edv", "fps"):
      assert np.asarray(ex[k]).dtype in (np.float32, np.float64) or isinstance(ex[k], float)
  stats = json.loads((version_dir / STATS_FILE).read_text())
  assert len(stats["mean"]) == 3 and len(stats["std"]) == 3 and stats["split"] == "train"
  assert 5 < stats["mean"][0] < 120 and 10 < stats["std"][0] < 120


def test_config_28_resizes_frames_and_scales_traces(clean_raw, clean_prepared, tmp_path):
  version_dir = prepare("echonet_dynamic", clean_raw, clean_prepared[1], "28", verbose=False)
  assert version_dir.parts[-3:] == ("echonet_dynamic", "28", "1.0.0")
  tracings = echonet.read_tracings(clean_raw)
  recs = _all_records(version_dir)
  for name, (_, ex) in recs.items():
    assert ex["video"].shape[1:] == (28, 28, 3)
    pair = echonet.ed_es(tracings[name])
    assert np.allclose(ex["es_trace"], pair.es_trace * 28 / 112, atol=1e-3)


def test_frame_store_matches_records_and_survives_pickling(clean_prepared):
  """The memmap frame store gives the same records as the TFDS source, and a pickled copy (what grain workers get)
  reads the same clips. Its speed against AVI decoding is measured by benchmarks/data_pipeline.py."""
  import pickle

  from echojax.data.framestore import open_frame_store

  version_dir = clean_prepared[0]
  for split in ("train", "val", "test"):
    fs, src = open_frame_store(version_dir, "echonet_dynamic", split), _source(version_dir, split)
    assert fs is not None and len(fs) == len(src)
    for i in range(len(src)):
      a, b = fs[i], src[i]
      assert set(a) == set(b)
      for k in b:
        if isinstance(b[k], np.ndarray):
          assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
        else:
          assert type(a[k]) is type(b[k]) and a[k] == b[k], k
  fs = open_frame_store(version_dir, "echonet_dynamic", "train")
  copy = pickle.loads(pickle.dumps(fs))
  for i in range(len(fs)):
    v, w = fs[i]["video"], copy[i]["video"]
    frames = np.arange(0, 64, 2) % len(v)  # 32 frames, period 2, as the pipeline samples
    assert np.array_equal(np.asarray(w[frames]), np.asarray(v[frames]))
    assert copy[i]["file_name"] == fs[i]["file_name"]


def test_broken_folder_reports_each_reason(broken, broken_prepared):
  raw, by, orig_tr, rows = broken
  report = json.loads((broken_prepared / REPORT_FILE).read_text())
  recs_ok = set(rows) - {by["missing"], by["corrupt"], by["nan_ef"], by["text_ef"]}
  skipped = {Path(i["file"]).stem: i for i in report["skipped"]}
  assert set(skipped) == {by["missing"], by["corrupt"], by["nan_ef"], by["text_ef"]}
  assert skipped[by["missing"]]["reason"].startswith("video missing")
  assert skipped[by["missing"]]["row"] == 1
  assert skipped[by["corrupt"]]["reason"].startswith("video unreadable")
  assert "EF missing or not a number ('NaN')" in skipped[by["nan_ef"]]["reason"]
  assert "EF missing or not a number ('n/a')" in skipped[by["text_ef"]]["reason"]
  notes = {}
  for i in report["notes"]:
    notes.setdefault(Path(i["file"]).stem, []).append(i["reason"])
  assert any(r.startswith("video not 112x112 (resized): 768x1024 -> 112x112") for r in notes[by["big"]])
  assert any(r.startswith("short video (kept") and "20 frames" in r for r in notes[by["short"]])
  assert any(r.startswith("no tracings (kept") for r in notes[by["no_tracings"]])
  fps_row = rows[by["fps"]]
  assert any(r.startswith("FPS disagrees with AVI header (FileList wins)") for r in notes[by["fps"]])
  assert by["lower_split"] not in notes and by["avi_name"] not in notes  # handled silently: not problems
  assert sum(report["counts"].values()) == N_BROKEN - 4
  for split in ("TRAIN", "VAL", "TEST"):  # a split whose rows were all skipped is left out, with a note
    if not any(r["Split"].upper() == split and r["FileName"].removesuffix(".avi") in recs_ok for r in rows.values()):
      assert f"split without usable rows (left out): {split}" in [i["reason"] for i in report["notes"]]

  recs = _all_records(broken_prepared)
  assert set(recs) == set(rows) - {by["missing"], by["corrupt"], by["nan_ef"], by["text_ef"]}
  assert recs[by["lower_split"]][0] == "train"
  assert by["avi_name"] in recs  # stored without .avi
  split, ex = recs[by["no_tracings"]]
  assert ex["ed_frame"] == -1 and ex["es_frame"] == -1 and ex["ed_trace"].shape == (0, 4)
  _, ex = recs[by["big"]]
  assert ex["video"].shape[1:] == (112, 112, 3)
  pair = echonet.ed_es(orig_tr[by["big"]])  # traces scaled back from 1024x768 pixels to the stored 112
  assert np.allclose(ex["ed_trace"], pair.ed_trace, atol=1e-2)
  _, ex = recs[by["short"]]
  assert ex["num_frames"] == 20 and ex["video"].shape[0] == 20
  _, ex = recs[by["fps"]]
  assert ex["fps"] == pytest.approx(float(fps_row["FPS"]))


def test_strict_fails_naming_the_row(broken, tmp_path):
  raw, by, _, rows = broken
  with pytest.raises(UserError) as e:
    prepare("echonet_dynamic", raw, tmp_path / "strict", "28", strict=True, verbose=False)
  msg = str(e.value)
  assert by["nan_ef"] in msg and "(row 3)" in msg and "EF missing or not a number" in msg and "--strict" in msg


def test_strict_on_missing_video_and_cli_exit(broken, tmp_path):
  """Only the missing-video problem left: strict names the video; the CLI exits 2 with no traceback."""
  raw, by, _, rows = broken
  sub = tmp_path / "raw"
  shutil.copytree(raw, sub)
  fl = read_csv(sub / "FileList.csv")
  keep = [r for r in fl if r["FileName"] in (by["missing"], by["short"])]
  write_csv(sub / "FileList.csv", keep, list(fl[0]))
  proc = subprocess.run([sys.executable, "-m", "echojax.data.prepare", "echonet_dynamic", "--manual-dir", str(sub),
                         "--data-dir", str(tmp_path / "out"), "--config", "28", "--strict"],
                        capture_output=True, text=True, cwd=REPO, env={**os.environ, "ECHOJAX_DEBUG": ""})
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  assert f"Videos/{by['missing']}.avi (row 1): video missing" in proc.stderr


def test_missing_manual_dir_and_filelist(tmp_path):
  with pytest.raises(UserError, match="FileList.csv"):
    prepare("echonet_dynamic", tmp_path / "nowhere", tmp_path / "out", verbose=False)
  (tmp_path / "raw" / "Videos").mkdir(parents=True)
  with pytest.raises(UserError, match=r"FileList.csv not found: an EchoNet-Dynamic folder must contain"):
    prepare("echonet_dynamic", tmp_path / "raw", tmp_path / "out", verbose=False)
  with pytest.raises(UserError, match="no config '64'"):
    prepare("echonet_dynamic", tmp_path / "raw", tmp_path / "out", "64", verbose=False)


def test_prepare_summary_and_reuse(clean_raw, clean_prepared, capsys):
  version_dir = prepare("echonet_dynamic", clean_raw, clean_prepared[1], "112")
  out = capsys.readouterr().out
  assert "already prepared" in out and "examples per split:" in out and "skipped rows: 0" in out
  assert version_dir == clean_prepared[0]


def test_ensure_synthetic_once_with_marker(capsys):
  from echojax import paths
  from echojax.data.prepare import ensure_synthetic

  d = ensure_synthetic("echonet_dynamic", "28", num=4, seed=1)
  err = capsys.readouterr().err
  assert "no data_dir configured: using synthetic EchoNet-Dynamic phantoms at" in err
  assert Path(d).is_relative_to(paths.cache_dir() / "synthetic")
  shard = next((Path(d) / "echonet_dynamic" / "28" / "1.0.0").glob("*train.array_record*"))
  assert len(_source(shard.parent, "train")) >= 1
  mtime = shard.stat().st_mtime_ns
  assert "generating 4 echonet_dynamic phantoms" in err
  assert ensure_synthetic("echonet_dynamic", "28", num=4, seed=1) == d
  assert shard.stat().st_mtime_ns == mtime  # reused, not rebuilt
  assert "generating" not in capsys.readouterr().err
  (Path(d) / ".echojax_complete-28").unlink()  # as if interrupted before the marker was written
  ensure_synthetic("echonet_dynamic", "28", num=4, seed=1, verbose=False)
  shard2 = next((Path(d) / "echonet_dynamic" / "28" / "1.0.0").glob("*train.array_record*"))
  assert shard2.stat().st_mtime_ns != mtime and (Path(d) / ".echojax_complete-28").exists()
