"""The spatial/temporal weighting sweep: expansion into the 7 runs, and a real local run (train + evaluate in
subprocesses through launch.sweep) on the smoke variant for two of them, producing results.csv / results.md / PNG
with one row per run, evaluation outputs (micro/macro-F1, per-class precision/recall, confusion matrix) and the
dynamic gate's per-sample weights in predictions.csv."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from echojax.errors import UserError
from echojax.paths import REPO_ROOT
from launch.sweep import load_sweep

NAME = "spatiotemporal_weighting"


def test_sweep_expands_to_fixed_learned_dynamic(monkeypatch):
  monkeypatch.delenv("ECHOJAX_SWEEP_RUNS", raising=False)
  sweep = load_sweep(NAME, "smoke")
  assert sweep["config"] == "view_video_spatiotemporal:smoke" and sweep["split"] == "test"
  assert [r["name"] for r in sweep["runs"]] == ["fixed_0", "fixed_0.25", "fixed_0.5", "fixed_0.75", "fixed_1",
                                                "learned", "dynamic"]
  demo = load_sweep(NAME, "demo")  # the demo repeats each setting over three seeds, on 40 phantoms per view
  assert [r["name"] for r in demo["runs"][:4]] == ["fixed_0_s0", "fixed_0_s1", "fixed_0_s2", "fixed_0.25_s0"]
  assert {r["overrides"]["data.synthetic_num"] for r in demo["runs"]} == {40}
  assert [r["overrides"]["seed"] for r in demo["runs"][:3]] == [0, 1, 2] and demo["compare"]
  assert [r["overrides"]["model.kwargs.mode"] for r in sweep["runs"]] == [
      "fixed:0", "fixed:0.25", "fixed:0.5", "fixed:0.75", "fixed:1", "learned", "dynamic"]
  # every override is a valid config override that reaches the model's mode
  from echojax.config import load_config
  for r in sweep["runs"]:
    c = load_config(sweep["config"], {k: str(v) for k, v in r["overrides"].items()})
    assert c.model.kwargs.mode == r["overrides"]["model.kwargs.mode"]
  monkeypatch.setenv("ECHOJAX_SWEEP_RUNS", "fixed_0.5,nope")
  with pytest.raises(UserError, match="nope"):
    load_sweep(NAME, "smoke")


@pytest.mark.slow
def test_local_smoke_sweep_writes_table_plot_and_gate_weights(tmp_path):
  runs = ["fixed_1", "dynamic"]
  env = {**os.environ, "ECHOJAX_SWEEP_RUNS": ",".join(runs)}
  out = tmp_path / "sweep"
  proc = subprocess.run([sys.executable, "-m", "launch.sweep", NAME, "--local", "--variant", "smoke", "--out",
                         str(out)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

  rows = list(csv.DictReader((out / "results.csv").open()))
  assert [r["name"] for r in rows] == runs and all(r["status"] == "ok" for r in rows)
  values = [float(r["metrics.micro_f1"]) for r in rows]
  assert all(0.0 <= v <= 1.0 for v in values)
  for r, v in zip(rows, values):  # evaluate's bootstrap interval travels into the table
    assert float(r["ci_low"]) <= v <= float(r["ci_high"])
  table = (out / "results.md").read_text()
  assert "95% bootstrap CI" in table and f"[{float(rows[0]['ci_low']):.3f}, {float(rows[0]['ci_high']):.3f}]" in table
  assert table.count("| ok |") == 2 and "| fixed_1 | 1 |" in table and "| dynamic | dynamic |" in table
  pngs = sorted(p.name for p in out.glob("*.png"))
  assert pngs == ["metrics_micro_f1_vs_spatial_weight_w__fixed____mode.png", "paired.png", "table.png"], pngs
  assert all((out / p).stat().st_size > 1000 for p in pngs)
  (pair,) = list(csv.DictReader((out / "paired.csv").open()))  # the two settings on the same test cines
  assert pair["A vs B"] == "fixed_1 vs dynamic" and pair["differs (Holm p < 0.05)"] in ("yes", "no")
  assert float(pair["accuracy A"]) == pytest.approx(values[0]) and float(pair["accuracy B"]) == pytest.approx(values[1])

  for name in runs:
    ev = out / name / "eval_test"
    m = json.loads((ev / "metrics.json").read_text())["metrics"]
    assert {"accuracy", "micro_f1", "macro_f1", "confusion_matrix"} <= set(m)
    assert m["micro_f1"] == pytest.approx(m["accuracy"])  # single-label: micro-F1 == accuracy
    assert set(m["per_class"]) == {"A2C", "A3C", "A4C", "A5C", "PLAX", "PSAX", "SUBCOSTAL", "SUPRASTERNAL",
                                   "CW_DOPPLER", "PW_DOPPLER", "M_MODE"}
    assert {"precision", "recall"} <= set(m["per_class"]["A4C"])
    assert np.asarray(m["confusion_matrix"]).shape == (11, 11)
    assert (ev / "confusion_matrix.png").stat().st_size > 1000
    preds = list(csv.DictReader((ev / "predictions.csv").open()))
    assert len(preds) == np.asarray(m["confusion_matrix"]).sum()
    gates = np.asarray([[float(p["gate_0"]), float(p["gate_1"])] for p in preds])
    np.testing.assert_allclose(gates.sum(1), 1.0, atol=1e-5)
    if name == "fixed_1":  # w = 1: the spatial stream only, for every sample
      np.testing.assert_allclose(gates[:, 0], 1.0)
    else:  # dynamic: a per-sample softmax gate strictly inside (0, 1)
      assert np.all((gates > 0) & (gates < 1))


def test_write_results_adds_extra_metric_columns_with_their_intervals(tmp_path):
  from launch.sweep import write_results

  sweep = {"config": "x:demo", "metric": "metrics.macro_f1", "extra_metrics": ["metrics.accuracy", "metrics.auroc"],
           "x_label": "setting", "split": "test"}
  results = [{"name": "full", "x": "full", "metrics.macro_f1": 0.8, "ci_low": 0.7, "ci_high": 0.9, "status": "ok",
              "seconds": 1.0, "workdir": "w", "metrics.accuracy": 0.85, "metrics.accuracy_ci_low": 0.75,
              "metrics.accuracy_ci_high": 0.95, "metrics.auroc": 0.9, "metrics.auroc_ci_low": None,
              "metrics.auroc_ci_high": None},
             {"name": "plain", "x": "plain", "metrics.macro_f1": None, "status": "failed", "seconds": 2.0,
              "workdir": "w2"}]
  paths = write_results(sweep, results, tmp_path)
  table = paths["md"].read_text().splitlines()
  assert table[2].startswith("| run | setting | metrics.macro_f1 | 95% bootstrap CI | metrics.accuracy [95% CI] |")
  assert "| full | full | 0.8000 | [0.700, 0.900] | 0.8500 [0.750, 0.950] | 0.9000 | ok |" in table
  assert "| plain | plain |  |  |  |  | failed |" in table
  rows = list(csv.DictReader(paths["csv"].open()))
  assert rows[0]["metrics.accuracy_ci_high"] == "0.95" and rows[1]["metrics.accuracy"] == ""
