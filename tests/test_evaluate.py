"""Evaluation: restore a run, average all clips per video (test-time augmentation), write metrics JSON,
predictions CSV and PNG plots, for EF regression and EF classification; CLI errors; and the real ef_classification
smoke config end to end on the synthetic phantoms (train + evaluate)."""

import csv
import json
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest

from echojax import evaluate
from echojax.config import from_json, load_config
from echojax.tasks import get_task
from echojax.run import build_model
from echojax.train import at_end_reports, train

HELPER = "tests/helpers/trainer.py"


def _rows(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _png_ok(path: Path):
  assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


def test_ef_regression_eval_averages_all_clips_and_writes_outputs(tmp_path):
  train(load_config(f"{HELPER}:smoke", {"train.num_steps": "4"}), tmp_path)
  summary = evaluate.evaluate_workdir(tmp_path, split="val", clips="all", checkpoint="best", bootstrap=50)
  out = tmp_path / "eval" / "val_best"
  saved = json.loads((out / "metrics.json").read_text())
  m = saved["metrics"]
  assert saved["num_videos"] == 12 and saved["clips"] == "all"
  for k in ("mae", "rmse", "r2"):
    assert m[f"{k}_ci_low"] <= m[k] <= m[f"{k}_ci_high"]
  assert {"ef_lt_35", "ef_lt_40", "ef_lt_45", "ef_lt_50"} <= set(m)
  rows = _rows(out / "predictions.csv")
  assert [r["file_name"] for r in rows] == [f"val_{i:04d}" for i in range(12)]
  for name in ("ef_scatter", "bland_altman", "training_curves"):
    _png_ok(out / f"{name}.png")

  # Each prediction is the mean over the video's 2 clips (the fake loader's 2nd clip is the reversed video).
  config = from_json((tmp_path / "config.json").read_text())
  model = build_model(config, get_task(config))
  step = summary["step"]
  state = ocp.StandardCheckpointer().restore((tmp_path / "best" / str(step) / "state").absolute())
  from tests.helpers.trainer import record
  video, ef = record(10_000 + 3, config.data.frames, config.data.size)
  clips = np.stack([video, video[::-1]])
  out_clips, _ = model.apply({"params": state["params"], "batch_stats": state["batch_stats"]}, clips, train=False)
  assert float(rows[3]["prediction"]) == pytest.approx(float(np.mean(out_clips)), rel=1e-4, abs=1e-3)
  assert float(rows[3]["target"]) == pytest.approx(ef, rel=1e-5)
  assert summary["metrics"]["mae"] == pytest.approx(
      np.mean([abs(float(r["prediction"]) - float(r["target"])) for r in rows]), rel=1e-4)


@pytest.mark.slow
def test_ef_classification_eval_writes_probs_and_curves(tmp_path):
  train(load_config(f"{HELPER}:task=ef_classification", {"train.num_steps": "2", "evals.val.every_steps": "2"}),
        tmp_path)
  evaluate.main(["--workdir", str(tmp_path), "--split", "val", "--clips", "one", "--bootstrap", "0"])
  out = tmp_path / "eval" / "val_best"
  rows = _rows(out / "predictions.csv")
  assert len(rows) == 12
  probs = np.array([[float(r["prob_EF>=50"]), float(r["prob_EF<50"])] for r in rows])
  np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
  assert all(int(r["target"]) == int(float(r["ef"]) < 50) for r in rows)
  m = json.loads((out / "metrics.json").read_text())["metrics"]
  assert {"auroc", "auprc", "accuracy", "f1", "ef_lt_35", "confusion_matrix"} <= set(m)
  for name in ("confusion_matrix", "roc", "pr", "training_curves"):
    _png_ok(out / f"{name}.png")


def test_cli_errors_are_clean(capsys, tmp_path):
  with pytest.raises(SystemExit) as e:
    evaluate.main(["--workdir", str(tmp_path / "missing")])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert "config.json not found" in err and "python -m echojax.train" in err and "Traceback" not in err


@pytest.mark.slow
def test_ef_classification_smoke_train_then_evaluate_test_split(tmp_path):
  """The real ef_classification smoke config on the synthetic phantoms: train, then evaluate the test split with
  all clips; file names come from the prepared records."""
  config = load_config("ef_classification:smoke,weighted")
  train(config, tmp_path)
  saved = json.loads((tmp_path / "config.json").read_text())
  assert len(saved["task"]["class_weights"]) == 2  # "balanced" resolved from train-split frequencies
  summary = evaluate.evaluate_workdir(tmp_path, split="test", clips="all", bootstrap=0)
  rows = _rows(tmp_path / "eval" / "test_best" / "predictions.csv")
  assert len(rows) == summary["num_videos"] > 0
  assert all(r["file_name"] and not r["file_name"].isdigit() for r in rows)
  for name in ("confusion_matrix", "roc", "pr", "training_curves"):
    _png_ok(tmp_path / "eval" / "test_best" / f"{name}.png")
  assert at_end_reports(config, tmp_path) == []  # no at_end evaluation unless the config asks (the view demos do)
  config = load_config("ef_classification:smoke,weighted",  # a new evaluation, added by overrides alone
                       ["evals.test.split=test", "evals.test.clips=all", "evals.test.at_end=true"])
  [line] = at_end_reports(config, tmp_path)
  saved = json.loads((tmp_path / "eval" / "test_best" / "metrics.json").read_text())
  m = saved["metrics"]
  assert line.startswith(f"test ({summary['num_videos']} items, step ") and "(chance 1/2 = 0.500)" in line
  assert f"accuracy {m['accuracy']:.4f}" in line
  assert config.evals.val.clips == "one" and saved["clips"] == "all"  # the test entry's, not validation's
  assert m["accuracy"] == summary["metrics"]["accuracy"]
  # external validation: the same run scored on another prepared copy of the dataset (other phantoms)
  from echojax.data.prepare import prepare
  from echojax.data.synthetic import echonet as gen

  other = tmp_path / "hospital_b"
  prepare("echonet_dynamic", gen.generate(tmp_path / "raw_b", 20, 7), other, config="28", verbose=False)
  evaluate.main(["--workdir", str(tmp_path), "--data-dir", str(other), "--bootstrap", "0"])
  ext = json.loads((tmp_path / "eval" / "hospital_b_test_best" / "metrics.json").read_text())
  rows = _rows(tmp_path / "eval" / "hospital_b_test_best" / "predictions.csv")
  assert ext["num_videos"] == len(rows) > 0 and ext["step"] == saved["step"]
  assert {r["file_name"] for r in rows}.isdisjoint(r["file_name"] for r in _rows(tmp_path / "eval" / "test_best" /
                                                                                  "predictions.csv"))


def test_beat_clip_starts_follow_the_r_peaks():
  from echojax.data.frames import beat_clip_starts
  record = {"video": np.zeros((100, 4, 4, 3), np.uint8), "num_frames": 100, "fps": 25.0,
            "r_peaks": np.array([5, 30, 55, 80])}  # RR 1 s: three complete cycles inside the cine
  assert beat_clip_starts(record, 8, 2) == ([5, 30, 55], "r_peaks")
  # a clip of 63 frames cannot start after frame 37: the last beat's clip is moved back to fit
  assert beat_clip_starts(record, 32, 2) == ([5, 30, 37], "r_peaks")
  flat = {"video": np.zeros((40, 4, 4, 3), np.uint8), "num_frames": 40, "fps": 25.0}
  assert beat_clip_starts(flat, 8, 2) == ([], "none")  # no cycle: evaluation falls back to every clip


@pytest.mark.slow
def test_beat_by_beat_ef_beside_all_clips(tmp_path):
  """clips="beats" on the EchoNet phantoms: one clip per beat found by the intensity cycle, the video's EF their
  mean, the per-beat values and spread in predictions.csv, and the all-clips metrics of the same checkpoint."""
  from echojax.data.frames import beat_clip_starts
  from echojax.run import Run

  train(load_config("echonet_ef:smoke", {}), tmp_path)
  beats = evaluate.evaluate_workdir(tmp_path, split="val", clips="beats", bootstrap=0)
  every = evaluate.evaluate_workdir(tmp_path, split="val", clips="all", bootstrap=0, out_dir=tmp_path / "all")
  m = beats["metrics"]
  assert m["all_clips"]["mae"] == pytest.approx(every["metrics"]["mae"], rel=1e-5)
  rows = _rows(tmp_path / "eval" / "val_best" / "predictions.csv")
  run = Run.load(tmp_path)
  source, config = run.loader("val", "one").source, run.config  # the split's records
  found = 0
  for r in rows:
    values = [float(v) for v in r["ef_beats"].split(";")]
    assert int(r["num_beats"]) == len(values) >= 1
    assert float(r["prediction"]) == pytest.approx(np.mean(values), abs=0.01)
    assert float(r["ef_beat_std"]) == pytest.approx(np.std(values), abs=0.01)
    starts, _ = beat_clip_starts(source[int(r["index"])], config.data.frames, config.data.period)
    found += bool(starts)
    if starts:
      assert int(r["num_beats"]) == len(starts)
  assert m["mae"] == pytest.approx(np.mean([abs(float(r["prediction"]) - float(r["target"])) for r in rows]),
                                   rel=1e-3)
  assert found > 0  # the phantoms' beats are found (else every video fell back to all clips)
