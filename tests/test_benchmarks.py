"""The benchmarks run end to end on tiny inputs and print their tables (numbers are not asserted: speed is measured
by running the benchmark, not by tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
  for label in ("ranking: AUROC + AP", "regression: MAE + RMSE + R2", "classification: acc + F1 + bal.acc"):
    rows = [x[len(label):].split() for x in out.splitlines() if x.startswith(label + " ")]
    assert [r[0] for r in rows] == ["60", "120"], out
    for n, v_min, v_med, s_min, s_med, speedup, diff in rows:
      assert speedup.endswith("x") and float(diff) < 1e-9  # both methods give the same per-resample values
    assert f"{label}: slowest speed-up" in out
  bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "metrics.py"), "--n", "5"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
  assert bad.returncode != 0 and "give test-set sizes >= 10" in bad.stderr and "Traceback" not in bad.stderr
