"""python -m echojax.predict --videos: a trained video run predicts cine files (AVI/MP4, DICOM, GIF) exactly as
echojax.evaluate predicts the same cines from the prepared split, and reports the files it could not read."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom.data
import pytest
from PIL import Image

from echojax import predict
from echojax.config import load_config
from echojax.errors import UserError


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
  """A view_video_3dcnn:smoke run (uniform clips, no ECG) and evaluate's test-split predictions."""
  from echojax import evaluate
  from echojax.train import train

  workdir = tmp_path_factory.mktemp("run")
  config = load_config("view_video_3dcnn:smoke")
  train(config, workdir)
  evaluate.evaluate_workdir(workdir, split="test", clips="all", bootstrap=0)
  with (workdir / "eval" / "test_best" / "predictions.csv").open() as f:
    rows = list(csv.DictReader(f))
  saved = json.loads((workdir / "config.json").read_text())
  raw = Path(saved["data"]["data_dir"]).parent / "raw"  # the synthetic set: <cache>/echo_views-.../{raw,tfds}
  assert raw.is_dir(), raw
  return workdir, raw, rows


def _read(path):
  with open(path) as f:
    return list(csv.DictReader(f))


@pytest.mark.slow
def test_videos_predict_as_evaluate_does(video_run, tmp_path, monkeypatch):
  workdir, raw, rows = video_run
  monkeypatch.setattr(predict, "CHUNK", 4)  # several chunks: one restore, rows in file order across them
  assert len(rows) > 2 * predict.CHUNK
  folder = tmp_path / "cines"
  for r in rows:
    dst = folder / r["file_name"]
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(raw / r["file_name"], dst)
  result = predict.predict_videos(workdir, folder, out=tmp_path / "pred.csv")
  assert result.skipped == [] and len(result.rows) == len(rows) > 0
  by_file = {str(Path(r["file"]).relative_to(folder)): r for r in result.rows}
  names = result.class_names
  assert len(names) == 11
  for r in rows:
    got = by_file[r["file_name"]]
    want = np.array([float(r[f"prob_{c}"]) for c in names])
    have = np.array([got[f"prob_{c}"] for c in names])
    np.testing.assert_allclose(have, want, atol=2e-6)  # evaluate's CSV keeps 6 significant digits
    assert got["predicted_class"] == names[int(r["prediction"])]
    assert got["num_frames"] > 0 and got["fps"] > 0
  assert [r["file"] for r in result.rows] == sorted(str(folder / r["file_name"]) for r in rows)
  written = _read(tmp_path / "pred.csv")
  assert [w["file"] for w in written] == [r["file"] for r in result.rows]
  assert list(written[0]) == ["file", "num_frames", "fps", "predicted_class"] + [f"prob_{c}" for c in names]
  assert not (tmp_path / "pred.skipped.csv").exists()
  assert result.summary().startswith(f"predicted {len(rows)} video(s) with the best checkpoint (step ")


@pytest.mark.slow
def test_dicom_gif_and_broken_files(video_run, tmp_path, capsys):
  workdir, raw, rows = video_run
  folder = tmp_path / "mixed"
  folder.mkdir()
  shutil.copy(pydicom.data.get_testdata_file("examples_ybr_color.dcm"), folder / "cine.dcm")  # 30 frames, YBR
  rng = np.random.default_rng(0)
  gif = [Image.fromarray(rng.integers(0, 255, (48, 64), dtype=np.uint8)) for _ in range(12)]
  gif[0].save(folder / "loop.gif", save_all=True, append_images=gif[1:], duration=40)
  (folder / "broken.avi").write_bytes(b"not a video")
  (folder / "empty.mp4").write_bytes(b"")
  (folder / "notes.txt").write_text("not a cine, not listed")
  predict.main(["--workdir", str(workdir), "--videos", str(folder)])
  out = capsys.readouterr().out
  assert "predicted 2 video(s)" in out and "skipped 2 unreadable file(s):" in out
  assert f"{folder / 'broken.avi'}: " in out and f"{folder / 'empty.mp4'}: file is empty" in out
  csv_path = workdir / "predictions" / "predictions.csv"
  got = {Path(r["file"]).name: r for r in _read(csv_path)}
  assert set(got) == {"cine.dcm", "loop.gif"}
  assert got["cine.dcm"]["num_frames"] == "30" and got["loop.gif"]["num_frames"] == "12"
  for r in got.values():
    probs = np.array([float(v) for k, v in r.items() if k.startswith("prob_")])
    assert probs.shape == (11,) and abs(probs.sum() - 1) < 1e-4
  skipped = _read(predict.skipped_csv(csv_path))
  assert {Path(s["file"]).name for s in skipped} == {"broken.avi", "empty.mp4"}


@pytest.mark.slow
def test_wrong_kind_of_input_and_bad_paths(video_run, tmp_path):
  workdir, _, _ = video_run
  with pytest.raises(UserError, match="predict its inputs with --videos"):
    predict.predict_images(workdir, tmp_path)
  image_run = tmp_path / "image_run"
  image_run.mkdir()
  from echojax import config as config_lib

  (image_run / "config.json").write_text(config_lib.to_json(load_config("echosdnet:smoke")))
  with pytest.raises(UserError, match="predict its inputs with --images"):
    predict.predict_videos(image_run, tmp_path)
  with pytest.raises(UserError, match="no such file or folder"):
    predict.predict_videos(workdir, tmp_path / "missing")
  (tmp_path / "empty_dir").mkdir()
  with pytest.raises(UserError, match="the folder has no cine files"):
    predict.predict_videos(workdir, tmp_path / "empty_dir")
  (tmp_path / "junk").mkdir()
  (tmp_path / "junk" / "a.avi").write_bytes(b"")
  nothing = predict.predict_videos(workdir, tmp_path / "junk", out=tmp_path / "junk.csv")
  assert nothing.rows == [] and nothing.summary().splitlines()[:2] == [
      "predicted 0 video(s): no file could be read", "skipped 1 unreadable file(s):"]
  assert _read(tmp_path / "junk.skipped.csv") == [{"file": str(tmp_path / "junk" / "a.avi"), "reason": "file is empty"}]
  with pytest.raises(SystemExit) as e:  # one kind of input per call (argparse's usage error)
    predict.main(["--workdir", str(workdir), "--videos", "a.avi", "--images", "b.png"])
  assert e.value.code == 2


def test_regression_summary_reports_the_spread():
  rows = [{"file": f"{i}.avi", "num_frames": 30, "fps": 50.0, "prediction": v}
          for i, v in enumerate((35.0, 55.0, 61.0))]
  text = predict.PredictResult(rows, [("x.avi", "file is empty")], [], None, "best", 7, kind="video").summary()
  assert text.splitlines() == ["predicted 3 video(s) with the best checkpoint (step 7)",
                               "predictions: median 55.00, range 35.00 to 61.00",
                               "skipped 1 unreadable file(s):", "  x.avi: file is empty"]


@pytest.mark.slow
def test_a_workdir_carries_what_prediction_needs(video_run, tmp_path):
  """The trainer records the training data's statistics and stored frame side in config.json, so a workdir copied
  to another machine, without the prepared data, predicts the same as where it was trained."""
  workdir, raw, rows = video_run
  saved = json.loads((workdir / "config.json").read_text())
  stats = saved["data"]["norm_stats"]
  assert stats["stored_size"] > 0 and len(stats["mean"]) == len(stats["std"]) == 3
  cines = sorted(raw.rglob("*.avi"))[:3]
  here = predict.predict_videos(workdir, cines, out=tmp_path / "here.csv")
  moved = tmp_path / "moved_run"
  shutil.copytree(workdir, moved)
  saved["data"]["data_dir"] = str(tmp_path / "not_on_this_machine")
  (moved / "config.json").write_text(json.dumps(saved))
  there = predict.predict_videos(moved, cines, out=tmp_path / "there.csv")
  assert [r["file"] for r in there.rows] == [r["file"] for r in here.rows] and len(here.rows) == 3
  for a, b in zip(here.rows, there.rows):
    assert a == b
