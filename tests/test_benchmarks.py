"""The benchmarks run end to end on tiny inputs and print their tables (numbers are not asserted: speed is measured
by running the benchmark, not by tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_data_pipeline_benchmark_prints_its_table(tmp_path):
  cmd = [sys.executable, str(REPO / "benchmarks" / "data_pipeline.py"), "--num-videos", "10", "--clips", "32",
         "--batch-size", "4", "--frames", "8", "--period", "1", "--workdir", str(tmp_path)]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout
  assert "page cache warmed:" in out
  for label in ("prepared (grain, train clips)", "uint8 clip read only", "AVI decode per sample",
                "stream all 10 videos"):
    line = next(x for x in out.splitlines() if label in x)
    assert line.split()[-1].isdigit()  # peak RSS column
  assert "prepared vs per-sample decoding:" in out and "stream peak RSS:" in out
  bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "data_pipeline.py"), "--num-videos", "3"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
  assert bad.returncode != 0 and "--num-videos must be >= 10" in bad.stderr and "Traceback" not in bad.stderr


def test_metrics_benchmark_prints_its_table():
  cmd = [sys.executable, str(REPO / "benchmarks" / "metrics.py"), "--n", "60", "120", "--resamples", "10",
         "--repeats", "1", "--classes", "3"]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout
  for label in ("ranking: AUROC + AP", "regression: MAE + RMSE + R2", "classification: acc F1 bacc P R spec"):
    rows = [x[len(label):].split() for x in out.splitlines() if x.startswith(label + " ")]
    assert [r[0] for r in rows] == ["60", "120"], out
    for n, v_min, v_med, s_min, s_med, speedup, diff in rows:
      assert speedup.endswith("x") and float(diff) < 1e-9  # both methods give the same per-resample values
    assert f"{label}: slowest speed-up" in out
  bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "metrics.py"), "--n", "5"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
  assert bad.returncode != 0 and "give test-set sizes >= 10" in bad.stderr and "Traceback" not in bad.stderr


def _table_rows(out: str) -> list[list[str]]:
  return [[c.strip() for c in ln.strip("|").split("|")] for ln in out.splitlines()
          if ln.startswith("| ") and not ln.startswith("| case")]


def test_train_step_benchmark_times_both_steps_side_by_side(tmp_path):
  """A case and a named config, tiny sizes: both steps run, the ratio, FLOPs, peak fraction and compile time print."""
  out_json = tmp_path / "t.json"
  cmd = [sys.executable, str(REPO / "benchmarks" / "train_step.py"), "resnet18", "--batch", "2", "--size", "32",
         "--rounds", "2", "--json", str(out_json)]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "measured float32 matmul peak" in proc.stdout and "conv implementation: cpu" in proc.stdout
  (row,) = _table_rows(proc.stdout)
  name, shape, jax_s, torch_s, rate, ratio, gflop, gflops, peak, compile_s = row
  assert name == "resnet18" and shape == "2x32x32x3"
  assert float(ratio.rstrip("x")) > 0 and float(gflop) > 0 and peak.endswith("%") and float(compile_s) > 0
  assert all(float(v) > 0 for v in jax_s.split(" / ") + torch_s.split(" / "))
  import json
  rec = json.loads(out_json.read_text())["rows"][0]
  assert len(rec["times"]["jax"]) == len(rec["times"]["torch"]) == 2  # interleaved rounds, both sides


@pytest.mark.slow
def test_train_step_benchmark_compiles_named_configs_and_rejects_unknown_cases():
  cmd = [sys.executable, str(REPO / "benchmarks" / "train_step.py"), "--config", "echonet_ef:smoke",
         "--compile-only"]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = _table_rows(proc.stdout)
  assert [r[0] for r in rows] == ["echonet_ef:smoke"]
  assert all(r[2] == "-" and float(r[-1]) > 0 for r in rows)  # compile time only
  bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_step.py"), "resnet19"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
  assert bad.returncode == 2 and "unknown case 'resnet19'" in bad.stderr and "Traceback" not in bad.stderr


def test_conv_benchmark_prints_its_table():
  cmd = [sys.executable, str(REPO / "benchmarks" / "conv.py"), "--rounds", "1", "--only", "resnet18 stage1 3x3"]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  (row,) = _table_rows(proc.stdout.replace("| layer", "| case"))
  assert row[0] == "resnet18 stage1 3x3" and row[-2].endswith("x") and row[-1].endswith("x")


def _ecg_rpeaks_module():
  import importlib.util

  spec = importlib.util.spec_from_file_location("ecg_rpeaks_bench", REPO / "benchmarks" / "ecg_rpeaks.py")
  mod = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = mod  # its dataclasses look their module up while the class is made
  spec.loader.exec_module(mod)
  return mod


def test_ecg_rpeaks_matching_on_hand_made_peaks():
  """The R-peak benchmark's scoring on peaks with a known answer: greedy nearest, one detection per beat,
  don't-care beats and ignored spans counting neither way; the anchors' consensus on three made-up pairs."""
  B = _ecg_rpeaks_module()
  assert B.score([104, 500], [100, 300], tol=10) == (1, 1, 1)  # 1 TP, 1 FP (500), 1 FN (300)
  assert B.match([100, 110], [108], tol=10) == [(1, 0)]  # the nearest beat takes the detection
  assert B.score([108], [100, 110], tol=10) == (1, 0, 1)
  assert B.score([98, 103], [100], tol=10) == (1, 1, 0)  # a second detection of the same beat is false
  assert B.score([100, 201], [100], tol=10, optional=[200]) == (1, 0, 0)  # matched to a don't-care beat: no FP
  assert B.score([100, 150], [100], tol=10, ignore=[(140, 160)]) == (1, 0, 0)  # inside an ignored span
  assert B.score([], [100], tol=10) == (0, 0, 1) and B.score([5], [], tol=10) == (0, 1, 0)
  assert B.rates(1, 1, 1) == (0.5, 0.5) and B.rates(0, 0, 0) == (None, None)
  # 3 pairs: 2 = a majority (a beat), 1 = a third (don't care, unless within 200 ms of a beat: 650 is 502's straggler)
  beats, dont_care = B.consensus([np.array([100, 500, 900]), np.array([102, 505]), np.array([98, 650, 800])], 1000.0)
  assert beats.tolist() == [100, 502] and dont_care.tolist() == [800, 900]


def test_ecg_rpeaks_benchmark_quick_json(tmp_path, fixtures_dir):
  """--quick --json on the real LUDB / PTB-XL records: the table prints, the JSON holds every class and detector,
  and its totals add up (per-lead counts sum to the class's, Se / PPV from them, LUDB's 6 annotated QRS x 12 leads)."""
  import json

  out_json = tmp_path / "r.json"
  cmd = [sys.executable, str(REPO / "benchmarks" / "ecg_rpeaks.py"), "--quick", "--json", str(out_json)]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout
  assert "CONSENSUS reference (not an annotation)" in out and "echojax fails:" in out
  dets = ["echojax", "neurokit2", "xqrs", "pantompkins"]
  res = json.loads(out_json.read_text())
  assert res["detectors"] == dets and res["quick"] and res["tol_s"] == 0.15
  names = [c["name"] for c in res["classes"]]
  assert names[:2] == ["LUDB 1 (annotated)", "PTB-XL 00001_lr (consensus)"] and names[-2:] == ["pure noise", "flat"]
  assert res["consensus"]["ptbxl/00001_lr"]["pairs"] == 36 and res["consensus"]["ptbxl/00001_lr"]["beats"] > 5
  table = {r[0]: r for r in _table_rows(out.replace("| class", "| case"))}
  assert set(table) == set(names) | {"time, s per minute of signal"}
  for c in res["classes"]:
    assert set(c["scores"]) == set(dets) and c["beats"] == sum(x["truth"] for x in c["cases"])
    for d, s in c["scores"].items():
      assert [s["tp"], s["fp"], s["fn"]] == np.sum([x["scores"][d] for x in c["cases"]], axis=0).tolist()
      if c["kind"] == "no truth":
        assert s["tp"] == s["fn"] == 0 and s["se"] is None
        assert table[c["name"]][3 + dets.index(d)].startswith(f"FP {s['fp']}")
      else:
        assert s["tp"] + s["fn"] == c["beats"] and s["se"] == pytest.approx(s["tp"] / c["beats"])
  ludb = res["classes"][0]
  assert ludb["kind"] == "annotated" and ludb["leads"] == 12 and ludb["beats"] == 72
  assert set(res["verdicts"]) == set(names) | {"time"} and all(v > 0 for v in
                                                               (res["time"][d]["s_per_min"] for d in dets))


def test_gp_regression_benchmark_prints_its_table():
  cmd = [sys.executable, str(REPO / "benchmarks" / "gp_regression.py"), "--n", "60", "120", "--dim", "16",
         "--pca", "4", "--test", "30", "--fit-subset", "60", "--steps", "3"]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [ln.split() for ln in proc.stdout.splitlines() if ln.split() and ln.split()[0] in ("60", "120")]
  assert [r[:2] for r in rows if r[1] == "sklearn"] == [["60", "sklearn"], ["120", "sklearn"]]
  for n, lib, hyper, fit, mae, std, cov68, cov95 in rows:
    assert float(hyper) > 0 and float(fit) > 0 and float(std) > 0 and 0 <= float(cov68) <= float(cov95) <= 1
  bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gp_regression.py"), "--n", "5"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
  assert bad.returncode != 0 and "give --n >= 20" in bad.stderr and "Traceback" not in bad.stderr
