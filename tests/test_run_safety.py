"""Run safety (issue 10): a rerun never silently replaces an earlier run's metrics, best checkpoint or config;
config mistakes that would train nothing are named; the trainer's end-of-run output is short."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from echojax.config import load_config
from echojax.errors import UserError
from echojax.train import train

HELPER = "tests/helpers/trainer.py:smoke"
RUN = {"train.num_steps": "4", "train.checkpoint_every": "2", "evals.val.every_steps": "2"}


def _snapshot(workdir: Path) -> dict[str, bytes]:
  return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted(workdir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
  """One finished 4-step run (checkpoints at 2 and 4, validation at 2 and 4, best/), copied by each test."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  train(load_config(HELPER, RUN), workdir)
  return workdir


def _copy(run: Path, tmp_path: Path) -> Path:
  out = tmp_path / "run"
  shutil.copytree(run, out)
  return out


@pytest.mark.parametrize("keep", ["metrics_and_best", "metrics", "best"])
def test_a_rerun_without_checkpoints_stops_and_touches_nothing(finished_run, tmp_path, keep):
  workdir = _copy(finished_run, tmp_path)
  shutil.rmtree(workdir / "checkpoints")
  if keep == "metrics":
    shutil.rmtree(workdir / "best")
  if keep == "best":
    (workdir / "metrics.jsonl").unlink()
  before = _snapshot(workdir)
  with pytest.raises(UserError) as e:
    train(load_config(HELPER, RUN), workdir)
  msg = str(e.value)
  assert "no checkpoints/" in msg and "another --workdir" in msg and "mv " in msg, msg
  if keep != "best":
    assert "metrics.jsonl" in msg
  if keep != "metrics":
    assert "best/" in msg
  assert _snapshot(workdir) == before
  assert not (workdir / "checkpoints").exists()
