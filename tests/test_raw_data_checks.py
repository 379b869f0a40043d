"""Raw-data checks for echonet_dynamic preparation (issue 10): the raw folder is never deleted, skip summaries
are grouped, encodings, bad videos and bad rows are named skips or notes."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from echojax.data import echonet
from echojax.data.prepare import REPORT_FILE, prepare
from echojax.data.report import SkipReport
from echojax.data.synthetic import echonet as gen
from echojax.errors import UserError
from tests.helpers.files import read_csv, write_csv


def _tree_digest(root: Path) -> dict:
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_raw(tmp_path_factory):
  return gen.generate(tmp_path_factory.mktemp("echonet_small"), 4, seed=3, progress=False)


# -- item 1: a --manual-dir where the prepared version folder goes is refused, and a file is called a file --------

@pytest.mark.parametrize("where", ["version", "inside"])
def test_manual_dir_in_version_folder_is_refused_untouched(small_raw, tmp_path, where):
  data = tmp_path / "DATA"
  version = data / "echonet_dynamic" / "28" / "1.0.0"
  manual = version if where == "version" else version / "raw"
  shutil.copytree(small_raw, manual)
  before = _tree_digest(manual)
  with pytest.raises(UserError) as e:
    prepare("echonet_dynamic", manual, data, "28", verbose=False)
  msg = str(e.value)
  assert str(manual) in msg and str(version) in msg
  assert _tree_digest(manual) == before
  with pytest.raises(UserError):  # --overwrite too
    prepare("echonet_dynamic", manual, data, "28", overwrite=True, verbose=False)
  assert _tree_digest(manual) == before


def test_manual_dir_that_is_a_file(tmp_path):
  f = tmp_path / "FileList.csv"
  f.write_text("FileName,EF,Split\n")
  with pytest.raises(UserError) as e:
    prepare("echonet_dynamic", f, tmp_path / "out", "28", verbose=False)
  assert "is a file" in str(e.value) and "does not exist" not in str(e.value)


# -- item 2: thousands of skips print a grouped summary; left-out splits are named --------------------------------

def test_skip_flood_is_grouped_and_names_left_out_splits(small_raw, tmp_path, capsys):
  raw = tmp_path / "raw"
  shutil.copytree(small_raw, raw)
  rows = read_csv(raw / "FileList.csv")
  header = list(rows[0])
  for r in rows:
    r["Split"] = "TRAIN"
  ghosts = [{**rows[0], "FileName": f"ghost{i:05d}", "Split": "VAL"} for i in range(3000)]
  write_csv(raw / "FileList.csv", rows + ghosts, header)
  version = prepare("echonet_dynamic", raw, tmp_path / "out", "28", frame_store=False)
  out = capsys.readouterr().out
  assert len(out.splitlines()) < 40, out[:3000]
  assert "video missing: 3000" in out
  assert out.count("ghost") == 3 and "... and 2997 more" in out and "echojax_report.json" in out
  summary = out[out.index("examples per split"):]
  assert "VAL" in summary and "TEST" in summary  # the left-out splits are named
  report = json.loads((version / REPORT_FILE).read_text())
  assert len(report["skipped"]) == 3000


def test_summary_groups_by_reason_with_examples():
  rep = SkipReport()
  for i in range(10):
    rep.skip(f"Videos/m{i}.avi", "video missing: file not found", row=i + 1)
  rep.skip("Videos/e.avi", "EF missing or not a number ('n/a') in FileList.csv", row=20)
  rep.skip("Videos/f.avi", "EF missing or not a number ('NaN') in FileList.csv", row=21)
  s = rep.summary().splitlines()
  assert "  - video missing: 10" in s and "  - EF missing or not a number in FileList.csv: 2" in s
  assert sum("Videos/m" in line for line in s) == 3 and "      ... and 7 more" in s


# -- item 3: a UTF-8 BOM is accepted; a FileList that is not UTF-8 is a named UserError -----------------------------

def test_utf8_bom_is_accepted(small_raw, tmp_path):
  raw = tmp_path / "raw"
  shutil.copytree(small_raw, raw)
  want_rows = echonet.read_filelist(small_raw, SkipReport(strict=True))
  want_tr = echonet.read_tracings(small_raw)
  for name in ("FileList.csv", "VolumeTracings.csv"):
    (raw / name).write_bytes(b"\xef\xbb\xbf" + (raw / name).read_bytes())
  assert echonet.read_filelist(raw, SkipReport(strict=True)) == want_rows
  tr = echonet.read_tracings(raw, SkipReport(strict=True))
  assert tr.keys() == want_tr.keys()
  version = prepare("echonet_dynamic", raw, tmp_path / "out", "28", strict=True, verbose=False, frame_store=False)
  assert json.loads((version / REPORT_FILE).read_text())["skipped"] == []


@pytest.mark.parametrize("name", ["FileList.csv", "VolumeTracings.csv"])
def test_csv_not_utf8_is_a_named_user_error(small_raw, tmp_path, name):
  raw = tmp_path / "raw"
  shutil.copytree(small_raw, raw)
  text = (raw / name).read_text()
  first = text.split("\n")[1].split(",")[0]
  (raw / name).write_bytes(text.replace(first, first + "\u00e9\u00e8", 1).encode("cp1252"))
  with pytest.raises(UserError) as e:
    echonet.read_filelist(raw, SkipReport()) if name == "FileList.csv" else echonet.read_tracings(raw, SkipReport())
  assert name in str(e.value) and "UTF-8" in str(e.value)


# -- item 4: a PNG renamed .avi and a truncated AVI are named skips (failures under --strict) -----------------------

def _bad_videos_raw(small_raw, tmp_path):
  import cv2

  from echojax.data.video import read_video

  raw = tmp_path / "raw"
  shutil.copytree(small_raw, raw)
  rows = read_csv(raw / "FileList.csv")
  png, half = rows[0]["FileName"], rows[1]["FileName"]
  frames, _ = read_video(raw / "Videos" / f"{png}.avi")
  ok, buf = cv2.imencode(".png", frames[0])
  (raw / "Videos" / f"{png}.avi").write_bytes(buf.tobytes())
  data = (raw / "Videos" / f"{half}.avi").read_bytes()
  (raw / "Videos" / f"{half}.avi").write_bytes(data[:len(data) // 2])
  return raw, png, half


def test_png_renamed_avi_and_truncated_avi_are_skipped(small_raw, tmp_path):
  raw, png, half = _bad_videos_raw(small_raw, tmp_path)
  version = prepare("echonet_dynamic", raw, tmp_path / "out", "28", verbose=False, frame_store=False)
  skipped = {Path(i["file"]).stem: i["reason"] for i in json.loads((version / REPORT_FILE).read_text())["skipped"]}
  assert set(skipped) == {png, half}
  assert "PNG" in skipped[png] and "not a video" in skipped[png]
  assert skipped[half].startswith("video truncated") and "frames" in skipped[half]


@pytest.mark.parametrize("which", ["png", "half"])
def test_bad_videos_fail_strict(small_raw, tmp_path, which):
  raw, png, half = _bad_videos_raw(small_raw, tmp_path)
  keep = png if which == "png" else half
  rows = [r for r in read_csv(raw / "FileList.csv") if r["FileName"] == keep]
  write_csv(raw / "FileList.csv", rows, list(rows[0]))
  with pytest.raises(UserError, match=keep):
    prepare("echonet_dynamic", raw, tmp_path / "out", "28", strict=True, verbose=False, frame_store=False)


# -- item 5: bad rows are skipped or noted by name, never stored silently -----------------------------------------

@pytest.fixture(scope="module")
def bad_rows(tmp_path_factory):
  """Raw folder (inside a parent that also holds a video outside it) with one bad row or tracing per video."""
  parent = tmp_path_factory.mktemp("echonet_bad_rows")
  raw = gen.generate(parent / "raw", 12, seed=11, progress=False)
  rows = read_csv(raw / "FileList.csv")
  header = list(rows[0])
  order = ["escape", "neg_vol", "fps_inf", "fps_zero", "nf_abc", "nf_neg", "nf_zero", "nan_trace", "equal_vol",
           "bad_long_axis", "short_row", "clean"]
  by = {q: r["FileName"] for q, r in zip(order, rows)}
  r = {q: rows[order.index(q)] for q in order}
  shutil.move(raw / "Videos" / f"{by['escape']}.avi", parent / "outside.avi")
  r["escape"]["FileName"] = "../../outside"
  r["neg_vol"].update(ESV="-12.5", EDV="inf")
  r["fps_inf"]["FPS"] = "inf"
  r["fps_zero"]["FPS"] = "0"
  r["nf_abc"]["NumberOfFrames"] = "abc"
  r["nf_neg"]["NumberOfFrames"] = "-7"
  r["nf_zero"]["NumberOfFrames"] = "0"
  write_csv(raw / "FileList.csv", rows, header)
  tr = read_csv(raw / "VolumeTracings.csv")
  tr_header = list(tr[0])
  mine = lambda q: [t for t in tr if t["FileName"] == f"{by[q]}.avi"]  # noqa: E731
  mine("nan_trace")[3]["X1"] = "nan"
  eq = mine("equal_vol")
  frames = list(dict.fromkeys(t["Frame"] for t in eq))
  first = [t for t in eq if t["Frame"] == frames[0]]
  second = [t for t in eq if t["Frame"] == frames[1]]
  for a, b in zip(first, second):  # the second traced frame: same coordinates as the first
    b.update({k: a[k] for k in ("X1", "Y1", "X2", "Y2")})
  with open(raw / "VolumeTracings.csv", "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(tr_header)
    for t in tr:
      vals = [t[k] for k in tr_header]
      if t is mine("bad_long_axis")[0]:
        vals[1] = "12,5"  # a decimal comma: the row gets a column too many
        vals = vals[:1] + vals[1].split(",") + vals[2:]
      elif t is mine("short_row")[0]:
        vals = vals[:3] + vals[5:]  # long-axis row without X2,Y2
      w.writerow(vals)
  version = prepare("echonet_dynamic", raw, parent / "out", "28", verbose=False, frame_store=False)
  return raw, by, version


def _records(version):
  import tensorflow_datasets as tfds

  b = tfds.builder_from_directory(str(version))
  out = {}
  for split in b.info.splits:
    src = b.as_data_source(split=split)
    for i in range(len(src)):
      ex = src[i]
      name = ex["file_name"].decode() if isinstance(ex["file_name"], bytes) else ex["file_name"]
      out[name] = ex
  return out


def _issues(version):
  report = json.loads((version / REPORT_FILE).read_text())
  notes: dict = {}
  for i in report["notes"]:
    notes.setdefault(Path(i["file"]).stem, []).append(i["reason"])
  return report["skipped"], notes


def test_filename_with_a_path_is_skipped_naming_the_row(bad_rows):
  raw, by, version = bad_rows
  skipped, _ = _issues(version)
  assert [(s["row"], "../../outside" in s["reason"] and "plain file name" in s["reason"]) for s in skipped] == [
      (1, True)]
  assert "../../outside" not in _records(version) and by["escape"] not in _records(version)
  with pytest.raises(UserError, match=r"row 1.*plain file name"):
    echonet.read_filelist(raw, SkipReport(strict=True))


def test_bad_volumes_fps_and_frame_counts_are_noted(bad_rows):
  raw, by, version = bad_rows
  _, notes = _issues(version)
  recs = _records(version)
  assert any("ESV not a volume >= 0 ('-12.5')" in n for n in notes[by["neg_vol"]])
  assert any("EDV not a volume >= 0 ('inf')" in n for n in notes[by["neg_vol"]])
  assert np.isnan(recs[by["neg_vol"]]["esv"]) and np.isnan(recs[by["neg_vol"]]["edv"])
  for q, shown in (("fps_inf", "inf"), ("fps_zero", "0")):
    assert any(n.startswith(f"FPS not a rate > 0 ({shown}) in FileList (AVI header used)") for n in notes[by[q]]), q
    assert np.isfinite(recs[by[q]]["fps"]) and recs[by[q]]["fps"] > 0
  for q, cell in (("nf_abc", "abc"), ("nf_neg", "-7"), ("nf_zero", "0")):
    assert any(f"NumberOfFrames not a whole number >= 1 ('{cell}')" in n for n in notes[by[q]]), q
    assert recs[by[q]]["num_frames"] == len(recs[by[q]]["video"]) > 0
  assert by["clean"] not in notes


@pytest.mark.parametrize("q, why", [("nan_trace", "non-finite coordinate"), ("equal_vol", "same volume")])
def test_unusable_tracings_are_dropped_with_a_note(bad_rows, q, why):
  raw, by, version = bad_rows
  _, notes = _issues(version)
  ex = _records(version)[by[q]]
  assert ex["ed_frame"] == ex["es_frame"] == -1 and ex["ed_trace"].shape == (0, 4)
  assert any(n.startswith("tracings unusable (dropped, video kept") and why in n for n in notes[by[q]])


@pytest.mark.parametrize("q", ["bad_long_axis", "short_row"])
def test_malformed_tracing_row_drops_that_videos_tracings(bad_rows, q):
  raw, by, version = bad_rows
  _, notes = _issues(version)
  assert any(f"all tracings of {by[q]}.avi dropped" in n for n in notes["VolumeTracings"])
  ex = _records(version)[by[q]]
  assert ex["ed_frame"] == -1 and ex["ed_trace"].shape == (0, 4)  # not a volume from shifted chord rows
  assert by[q] not in echonet.read_tracings(raw)
  clean = _records(version)[by["clean"]]
  assert clean["ed_frame"] >= 0 and clean["ed_trace"].shape == (21, 4)


def test_statistics_from_a_split_other_than_train_are_labelled_so(small_raw, tmp_path, capsys):
  """A FileList without TRAIN rows: the normalisation statistics come from another split and say which, in the
  stats file, the report and the printed line (not 'train statistics')."""
  raw = tmp_path / "raw"
  shutil.copytree(small_raw, raw)
  rows = read_csv(raw / "FileList.csv")
  for r in rows:
    r["Split"] = "TEST"
  write_csv(raw / "FileList.csv", rows, list(rows[0]))
  version = prepare("echonet_dynamic", raw, tmp_path / "out", "28", frame_store=False)
  out = capsys.readouterr().out
  assert "test statistics (" in out and "train statistics" not in out
  assert json.loads((version / "echojax_stats.json").read_text())["split"] == "test"
  notes = json.loads((version / REPORT_FILE).read_text())["notes"]
  assert any("no train split: normalisation statistics computed from the test split" in n["reason"] for n in notes)


def test_a_config_asking_for_another_prepared_size_gets_the_exact_commands(small_raw, tmp_path):
  """The demo asks for the 28 px builder config; the user prepared 56 px. The error gives the prepare command with
  its --config, and the alternative that works with what is there (the loader resizes)."""
  from echojax.data import pipeline

  prepare("echonet_dynamic", small_raw, tmp_path / "data", "56", frame_store=False, verbose=False)
  cfg = dict(name="echonet_dynamic", data_dir=str(tmp_path / "data"), builder_config="28", frames=4, batch_size=1)
  with pytest.raises(UserError) as e:
    pipeline.open_source(cfg, "train")
  msg = str(e.value)
  assert "--config 28" in msg and "--config.data.builder_config=56 --config.data.size=28" in msg
  fixed = dict(cfg, builder_config="56", size=28)  # the suggestion works
  batch = next(iter(pipeline.make_loader(fixed, "train", train=True, seed=0, process_index=0, process_count=1)))
  assert batch["video"].shape[2:4] == (28, 28)


@pytest.mark.slow
def test_a_prepared_set_without_the_validation_split_stops_before_training(tmp_path):
  """No VAL rows: the run stops before its first step, naming the evaluation, the splits there are and the fix;
  naming another split for validation then trains."""
  from echojax.config import load_config
  from echojax.train import train

  raw = gen.generate(tmp_path / "raw", 12, seed=4, progress=False)
  rows = read_csv(raw / "FileList.csv")
  for i, r in enumerate(rows):
    r["Split"] = "TRAIN" if i < 9 else "TEST"
  write_csv(raw / "FileList.csv", rows, list(rows[0]))
  prepare("echonet_dynamic", raw, tmp_path / "data", "28", verbose=False)
  over = {"data.data_dir": str(tmp_path / "data")}
  with pytest.raises(UserError, match=r"config.evals.val cannot run: split 'val' not in prepared .*"
                                      r"available splits: .*--config.evals.val.split=SPLIT"):
    train(load_config("echonet_ef:smoke", over), tmp_path / "run")
  assert not (tmp_path / "run" / "metrics.jsonl").exists()
  config = load_config("echonet_ef:smoke", {**over, "evals.val.split": "test", "train.num_steps": "2",
                                            "evals.val.every_steps": "2"})
  last = train(config, tmp_path / "run2")
  assert last["val"]["step"] == 2 and last["val"]["split"] == "test"
