"""Published tables and paired comparisons (launch/tables.py, echojax.metrics.paired): statistics on known cases,
collection of runs finished elsewhere from a fake bucket folder into results / paired tables, the EchoSDNet and
EF-classification tables from real smoke runs, and the publication list's commands."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from echojax import metrics as M
from echojax.errors import UserError
from echojax.paths import REPO_ROOT
from launch import sweep as S
from launch import tables as T


def test_mcnemar_exact_on_known_counts():
  a = np.array([1] * 10 + [0] * 6 + [1] * 4, bool)  # A right on 14, B right on 10 + 6 = 16 of 20
  b = np.array([1] * 10 + [1] * 6 + [0] * 4, bool)
  r = M.mcnemar_test(a, b)
  assert (r["b"], r["c"], r["n"]) == (4, 6, 20)
  # two-sided exact binomial on 4 of 10 at p = 1/2: sum of C(10, k) for k <= 4 and k >= 6, / 2^10
  assert r["p_value"] == pytest.approx(2 * sum([1, 10, 45, 120, 210]) / 1024)
  assert M.mcnemar_test(a, a)["p_value"] == 1.0
  assert M.mcnemar_test(np.zeros(6, bool), np.ones(6, bool))["p_value"] == pytest.approx(2 / 64)


def test_paired_bootstrap_keeps_pairs_and_pools_seeds():
  rng = np.random.default_rng(0)
  base = rng.random((3, 200)) < 0.7
  better = base | (rng.random((3, 200)) < 0.3)  # B is A plus extra right answers: A - B < 0 on every resample
  r = M.paired_bootstrap(base, better, bootstrap=500)
  assert r["diff"] == pytest.approx(base.mean() - better.mean())
  assert r["ci_low"] <= r["diff"] <= r["ci_high"] <= 0 and r["p_value"] < 0.01
  same = M.paired_bootstrap(base, base, bootstrap=200)
  assert (same["diff"], same["ci_low"], same["ci_high"], same["p_value"]) == (0.0, 0.0, 0.0, 1.0)
  with pytest.raises(UserError, match="same shape"):
    M.paired_bootstrap(base, better[:, :10])
  assert M.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_per_class_bootstrap_intervals():
  rng = np.random.default_rng(1)
  y = rng.integers(0, 3, 300)
  p = np.full((300, 3), 0.1)
  p[np.arange(300), np.where(rng.random(300) < 0.8, y, (y + 1) % 3)] = 0.8
  m = M.classification_metrics(y, p, ["a", "b", "c"], bootstrap=400)
  for c in "abc":
    for key in ("precision", "recall", "f1", "auroc", "auprc"):
      pc = m["per_class"][c]
      assert pc[f"{key}_ci_low"] <= pc[key] <= pc[f"{key}_ci_high"], (c, key)
      assert pc[f"{key}_ci_high"] - pc[f"{key}_ci_low"] > 0.01
  b = M.binary_metrics((y == 0).astype(int), p[:, 0], bootstrap=300)
  assert b["accuracy_ci_low"] <= b["accuracy"] <= b["accuracy_ci_high"]


def _fake_run(wd, split, correct, n_classes=11):
  """A finished run's evaluation as evaluate writes it: metrics.json and predictions.csv."""
  ev = wd / f"eval_{split}"
  ev.mkdir(parents=True)
  acc = float(np.mean(correct))
  ev.joinpath("metrics.json").write_text(json.dumps({"metrics": {"micro_f1": acc, "micro_f1_ci_low": acc - 0.1,
                                                                 "micro_f1_ci_high": acc + 0.1, "macro_f1": acc}}))
  with (ev / "predictions.csv").open("w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["file_name", "index", "target", "prediction"])
    for i, ok in enumerate(correct):
      target = i % n_classes
      w.writerow([f"c{i}.avi", i, target, target if ok else (target + 1) % n_classes])


def test_collect_from_a_fake_bucket_ranks_the_weighting_settings(tmp_path, monkeypatch):
  """The weighting sweep's 21 runs (7 settings x 3 seeds) finished elsewhere: collect reads the bucket copy and
  writes the same results table as a local run, and paired comparisons that separate a setting that is really
  better from one that is not."""
  monkeypatch.delenv("ECHOJAX_SWEEP_RUNS", raising=False)
  sweep = S.load_sweep("spatiotemporal_weighting", "demo")
  assert len(sweep["runs"]) == 21 and sweep["compare"] and sweep["runs"][1]["overrides"]["seed"] == 1
  bucket = tmp_path / "bucket" / "spatiotemporal_weighting_demo"
  rng = np.random.default_rng(0)
  truth = rng.random(66)
  for run in sweep["runs"]:
    p_right = 0.95 if run["setting"] == "dynamic" else 0.6
    _fake_run(bucket / run["name"], "test", truth < p_right if run["setting"] != "fixed_0" else truth < 0.58)
  out = tmp_path / "collected"
  results = S.collect(sweep, bucket, out=out)
  assert [r["status"] for r in results] == ["collected"] * 21
  rows = list(csv.DictReader((out / "results.csv").open()))
  assert rows[0]["name"] == "fixed_0_s0" and rows[0]["setting"] == "fixed_0" and rows[0]["seed"] == "0"
  paired = {r["A vs B"]: r for r in csv.DictReader((out / "paired.csv").open())}
  assert len(paired) == 21
  assert paired["fixed_0 vs dynamic"]["differs (Holm p < 0.05)"] == "yes"
  assert float(paired["fixed_0 vs dynamic"]["A - B [95% paired bootstrap CI]_ci_high"]) < 0
  near = paired["fixed_0 vs fixed_0.25"]  # 0.58 vs 0.6 on the same cines: not separable
  assert near["differs (Holm p < 0.05)"] == "no" and int(near["only A right"]) == 0
  assert float(near["Holm p"]) >= float(near["McNemar p"])
  pooled = {r["setting"]: r for r in csv.DictReader((out / "table.csv").open())}
  assert list(pooled) == ["fixed_0", "fixed_0.25", "fixed_0.5", "fixed_0.75", "fixed_1", "learned", "dynamic"]
  assert float(pooled["dynamic"]["micro-F1 (seeds pooled)"]) == pytest.approx(np.mean(truth < 0.95))
  assert float(pooled["dynamic"]["micro-F1 (seeds pooled)_ci_low"]) > float(
      pooled["fixed_0"]["micro-F1 (seeds pooled)_ci_high"])
  md = (out / "paired.md").read_text()
  assert "66 examples x 3 seed(s)" in md and (out / "paired.png").stat().st_size > 1000
  # a run that has not finished: reported missing, no paired table from a partial sweep, exit code 1
  import shutil
  shutil.rmtree(bucket / "dynamic_s2")
  out2 = tmp_path / "partial"
  proc = subprocess.run([sys.executable, "-m", "launch.sweep", "spatiotemporal_weighting", "--variant", "demo",
                         "--collect", str(bucket), "--out", str(out2)], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=120, env={**os.environ, "ECHOJAX_SWEEP_RUNS": ""})
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert "| missing |" in (out2 / "results.md").read_text() and not (out2 / "paired.md").exists()


def test_paired_comparison_refuses_mismatched_runs(tmp_path):
  sw = {"split": "test"}
  _fake_run(tmp_path / "a", "test", [True, False, True])
  _fake_run(tmp_path / "b", "test", [True, True])
  views = [T.RunView({"name": n, "workdir": str(tmp_path / n)}, sw) for n in "ab"]
  with pytest.raises(UserError, match="other test examples"):
    T.paired_comparisons(views, "test")


def test_variant_and_config_arguments_build_each_runs_config(monkeypatch):
  monkeypatch.delenv("ECHOJAX_SWEEP_RUNS", raising=False)
  ef = S.load_sweep("ef_classification_table", "full")
  assert len(ef["runs"]) == 12 and ef["splits"] == ["train", "val", "test"]
  cmd = S.train_command(ef, ef["runs"][3], "W", "py")
  assert cmd[4] == "ef_classification:model=resnet18,size=28,weighted"
  assert [c[6] for c in S.eval_commands(ef, "W", "py")] == ["train", "val", "test"]
  demo = S.load_sweep("ef_classification_table", "demo")
  from echojax.config import load_config
  c = load_config(S.config_spec(demo, demo["runs"][-1]), {})  # resnet152 112 weighted, demo: the size is kept
  assert (c.data.builder_config, c.model.kwargs.depth, c.task.class_weights) == ("112", 152, "balanced")
  assert load_config("ef_classification:demo", {}).data.builder_config == "28"  # the plain demo is unchanged
  views = S.load_sweep("view_models", "demo")
  specs = [S.config_spec(views, r) for r in views["runs"]]
  assert specs[1] == "view_image_effnetb2:ecg_phases,demo" and specs[3] == "view_video_resnet3d:model=r2plus1d_18,demo"
  assert S.config_spec(S.load_sweep("view_models", "full"), views["runs"][7]) == "video_vit"
  for system, _, command in T.PUBLISHED:  # every listed sweep command names a sweep file that exists
    if "launch.sweep" in command:
      assert command.split()[3] in S.list_sweeps(), system


@pytest.mark.slow
def test_echosdnet_and_ef_tables_from_smoke_runs(tmp_path):
  """Two published layouts filled from real (smoke) runs trained and evaluated through launch.sweep."""
  out = tmp_path / "sdnet"
  proc = subprocess.run([sys.executable, "-m", "launch.sweep", "echosdnet_table", "--local", "--variant", "smoke",
                         "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  rows = {r["Metric"]: r for r in csv.DictReader((out / "table.csv").open())}
  assert list(rows)[:7] == ["Precision", "Recall", "F1-Score", "Accuracy", "Test Loss", "ROC-AUC", "PR-AUC"]
  m = json.loads((out / "echosdnet" / "eval_test" / "metrics.json").read_text())["metrics"]
  assert float(rows["Accuracy"]["Overall"]) == pytest.approx(m["accuracy"])
  assert float(rows["F1-Score"]["Dual-View"]) == pytest.approx(m["per_class"]["dual"]["f1"])
  assert float(rows["Accuracy"]["Overall_ci_low"]) <= m["accuracy"] <= float(rows["Accuracy"]["Overall_ci_high"])
  cm = m["confusion_matrix"]
  assert [int(rows["confusion: true single"][c]) for c in ("Single-View", "Dual-View")] == cm[0]
  assert "Single-View | Dual-View | Overall" in (out / "table.md").read_text()
  assert (out / "table.png").stat().st_size > 1000

  out = tmp_path / "ef"
  env = {**os.environ, "ECHOJAX_SWEEP_RUNS": "resnet18_28"}
  proc = subprocess.run([sys.executable, "-m", "launch.sweep", "ef_classification_table", "--local", "--variant",
                         "smoke", "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
                        env=env)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  (row,) = list(csv.DictReader((out / "table.csv").open()))
  assert row["model, input size"] == "resnet18 28x28" and row["published (Train / Val / Test / AUROC / AUPRC)"] == (
      "0.97 / 0.87 / 0.85 / 0.87 / 0.83")
  for split, col in (("train", "Train Acc"), ("val", "Val Acc"), ("test", "Test Acc")):
    m = json.loads((out / "resnet18_28" / f"eval_{split}" / "metrics.json").read_text())["metrics"]
    assert float(row[col]) == pytest.approx(m["accuracy"])
