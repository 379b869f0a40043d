"""Evaluations are data (config.evals): validation, an extra dataset during training and an end-of-training test
are one mechanism; at most one evaluation keeps the best checkpoint."""

from __future__ import annotations

import json

import pytest

from echojax.config import load_config
from echojax.errors import UserError
from echojax.train import at_end_reports, train

HELPER = "tests/helpers/trainer.py:smoke"


def _records(workdir):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_an_external_evaluation_runs_beside_validation_and_at_the_end(tmp_path):
  # "ext": the fake dataset with another size (a data override), every 2 steps and after training
  config = load_config(HELPER, ["train.num_steps=4", "evals.val.every_steps=4", "evals.ext.split=test",
                                "evals.ext.every_steps=2", "evals.ext.at_end=true", "evals.ext.clips=all",
                                "evals.ext.data.num_val=6"])
  last = train(config, tmp_path)
  recs = _records(tmp_path)
  ext = [r for r in recs if r.get("eval") == "ext"]
  val = [r for r in recs if r["split"] == "val"]
  assert [r["step"] for r in ext] == [2, 4] and [r["step"] for r in val] == [4]
  assert all(r["split"] == "test" and "mae" in r for r in ext)
  assert last["ext"]["step"] == 4 and last["val"]["step"] == 4
  assert (tmp_path / "best").is_dir()  # val keeps the best checkpoint (pick_best by default)
  [line] = at_end_reports(config, tmp_path)
  summary = json.loads((tmp_path / "eval" / "ext_best" / "metrics.json").read_text())
  assert summary["split"] == "test" and summary["clips"] == "all"
  assert summary["num_videos"] == 6  # the data override reached the end-of-training evaluation too
  assert line.startswith("test (6 items, step 4)")


def test_evaluation_config_errors_name_the_field(tmp_path):
  config = load_config(HELPER, ["evals.ext.split=val", "evals.ext.every_steps=2", "evals.ext.pick_best=true"])
  with pytest.raises(UserError, match="val, ext|ext, val"):
    train(config, tmp_path / "two_best")
  with pytest.raises(UserError, match="Did you mean --config.evals.val.every_steps"):
    load_config(HELPER, ["evals.val.every_step=2"])
  bad = load_config(HELPER, ["evals.ext.split=val", "evals.ext.every_steps=2", "evals.ext.data.num_vall=3"])
  with pytest.raises(UserError, match="num_vall"):
    train(bad, tmp_path / "bad_override")
