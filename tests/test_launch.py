"""Launchers: sweep result tables/plots, TPU VM and SLURM command construction."""

import csv
import shlex

import pytest
from PIL import Image

from echojax.errors import UserError
from launch import slurm, sweep, tpu


def test_tpu_command_runs_train_on_all_workers():
  cmd = tpu.command("my-tpu", "us-central2-b", ["python3", "-m", "echojax.train", "--config", "video_vit"])
  parts = shlex.split(cmd)
  assert parts[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu"]
  assert "--worker=all" in parts and "--zone=us-central2-b" in parts
  assert parts[-1].endswith("python3 -m echojax.train --config video_vit")


def test_slurm_script_one_task_per_node(tmp_path):
  path = slurm.write_script(tmp_path / "a.sbatch", ["python", "-m", "echojax.train", "--config", "echonet_ef"],
                            nodes=4, gpus_per_node=8, job_name="ef")
  text = path.read_text()
  assert "#SBATCH --nodes=4" in text and "#SBATCH --ntasks-per-node=1" in text
  assert "#SBATCH --gpus-per-node=8" in text
  assert "srun python -m echojax.train --config echonet_ef" in text


def test_sweep_results_table_and_plot(tmp_path):
  sw = {"config": "x:smoke", "metric": "accuracy", "x_label": "fusion weight", "split": "test",
        "runs": [{"name": f"w{w}", "x": w} for w in (0, 0.5, 1)]}
  results = [{"name": r["name"], "x": r["x"], "accuracy": a, "status": "ok", "seconds": 1.0, "workdir": "."}
             for r, a in zip(sw["runs"], (0.5, 0.75, None))]
  results[1].update(ci_low=0.6, ci_high=0.875)  # evaluate's bootstrap interval, when the metric has one
  paths = sweep.write_results(sw, results, tmp_path)
  rows = list(csv.DictReader(open(paths["csv"])))
  assert [r["name"] for r in rows] == ["w0", "w0.5", "w1"] and rows[1]["accuracy"] == "0.75"
  assert (rows[1]["ci_low"], rows[1]["ci_high"], rows[0]["ci_low"]) == ("0.6", "0.875", "")
  md = paths["md"].read_text()
  assert "| w0.5 | 0.5 | 0.7500 | [0.600, 0.875] | ok |" in md and "| w0 | 0 | 0.5000 |  | ok |" in md
  assert "| w1 | 1 |  |  | ok |" in md
  with Image.open(paths["png"]) as im:
    assert im.size[0] > 300 and im.size[1] > 200


def test_train_command_carries_overrides(tmp_path):
  sw = {"config": "view_video_spatiotemporal:smoke", "split": "test"}
  cmd = sweep.train_command(sw, {"name": "a", "overrides": {"model.kwargs.mode": "fixed:0.25"}}, tmp_path / "a", "py")
  assert cmd[:5] == ["py", "-m", "echojax.train", "--config", "view_video_spatiotemporal:smoke"]
  assert "--config.model.kwargs.mode=fixed:0.25" in cmd


def test_unknown_sweep_lists_available():
  with pytest.raises(UserError, match="unknown sweep"):
    sweep.load_sweep("no_such_sweep", "smoke")
