"""Run safety (issue 10): a rerun never silently replaces an earlier run's metrics, best checkpoint or config;
config mistakes that would train nothing are named; the trainer's end-of-run output is short."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orbax.checkpoint as ocp
import pytest

from echojax.checkpoint import Checkpointer
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


def _meta_config(workdir: Path, step: int) -> dict:
  ck = Checkpointer(workdir, read_only=True)
  try:
    return ck.latest.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]["config"]
  finally:
    ck.close()


def test_the_same_command_resumes_and_keeps_config_json(finished_run, tmp_path):
  workdir = _copy(finished_run, tmp_path)
  before = (workdir / "config.json").read_text()
  last = train(load_config(HELPER, RUN), workdir)
  assert last["train"] is None  # already at num_steps: nothing to do, no error
  assert (workdir / "config.json").read_text() == before and not (workdir / "config_history").exists()


def test_resuming_with_another_config_stops_listing_the_keys(finished_run, tmp_path):
  workdir = _copy(finished_run, tmp_path)
  before = _snapshot(workdir)
  with pytest.raises(UserError) as e:
    train(load_config(HELPER, {**RUN, "train.num_steps": "6", "optim.lr": "0.002"}), workdir)
  msg = str(e.value)
  assert "optim.lr: 0.001 -> 0.002" in msg and "train.num_steps: 4 -> 6" in msg, msg
  assert "--allow-config-change" in msg and "step 4" in msg
  assert "config_spec" not in msg and "task.output_bias" not in msg  # same command, same prepared constants
  assert _snapshot(workdir) == before


def test_profiling_or_device_prefetch_on_a_resume_is_not_a_config_change(finished_run, tmp_path):
  workdir = _copy(finished_run, tmp_path)
  last = train(load_config(HELPER, {**RUN, "train.profile_steps": "2", "train.profile_start": "0",
                                    "data.device_prefetch": "0"}), workdir)
  assert last["train"] is None  # resumed at its last step: nothing to train, nothing to profile
  assert not (workdir / "profile").exists()


def test_allow_config_change_keeps_the_history_and_writes_the_new_config(finished_run, tmp_path):
  workdir = _copy(finished_run, tmp_path)
  old = json.loads((workdir / "config.json").read_text())
  last = train(load_config(HELPER, {**RUN, "train.num_steps": "6", "optim.lr": "0.002"}), workdir,
               allow_config_change=True)
  assert last["train"]["step"] == 6
  new = json.loads((workdir / "config.json").read_text())
  assert new["optim"]["lr"] == 0.002 and new["train"]["num_steps"] == 6
  [kept] = list((workdir / "config_history").iterdir())
  assert kept.name.startswith("00000004-") and json.loads(kept.read_text()) == old
  assert _meta_config(workdir, 6)["optim"]["lr"] == 0.002 and _meta_config(workdir, 4)["optim"]["lr"] == 0.001


def test_a_failed_start_leaves_config_json_as_it_was(finished_run, tmp_path):
  # a resume allowed to change the model, whose checkpoint then does not fit: config.json still describes the weights
  workdir = _copy(finished_run, tmp_path)
  before = (workdir / "config.json").read_text()
  with pytest.raises(Exception):
    train(load_config(HELPER, {**RUN, "model.kwargs.width": "8"}), workdir, allow_config_change=True)
  assert (workdir / "config.json").read_text() == before and not (workdir / "config_history").exists()
  # a fresh start whose model cannot be built does not replace the config.json it found
  fresh = tmp_path / "fresh"
  fresh.mkdir()
  (fresh / "config.json").write_text(before)
  for bad in ({"model.name": "no_such_model"}, {"evals.ext.split": "val", "evals.ext.every_steps": "2",
                                                 "evals.ext.data.num_vall": "3"}):
    with pytest.raises(UserError):
      train(load_config(HELPER, {**RUN, **bad}), fresh)
    assert (fresh / "config.json").read_text() == before


def test_the_cli_flag_reaches_train():
  from echojax.train import parse_args
  assert parse_args(["--config", HELPER, "--allow-config-change"])[0].allow_config_change is True
  assert parse_args(["--config", HELPER])[0].allow_config_change is False


def test_a_workdir_that_is_a_file_is_named(tmp_path):
  path = tmp_path / "notes.txt"
  path.write_text("mine")
  with pytest.raises(UserError, match=r"notes\.txt is a file"):
    train(load_config(HELPER, RUN), path)
  with pytest.raises(UserError, match=r"notes\.txt"):  # a folder under a file
    train(load_config(HELPER, RUN), path / "run")
  assert path.read_text() == "mine"


@pytest.mark.parametrize("override, field", [("train.num_steps=-5", "num_steps"), ("train.num_epochs=-1", "num_epochs"),
                                             ("train.log_every=0", "log_every"),
                                             ("train.num_steps=0", "num_epochs")])
def test_loop_settings_that_train_nothing_name_the_field(tmp_path, override, field):
  with pytest.raises(UserError, match=rf"config\.train\.{field}"):
    train(load_config(HELPER, [override]), tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_nonfinite_stop_before_any_checkpoint_says_so(tmp_path):
  config = load_config(HELPER, {"data.nan_at_batch": "1", "train.num_steps": "10", "train.log_every": "1",
                                "evals.val.every_steps": "0"})
  with pytest.raises(UserError, match="non-finite") as e:
    train(config, tmp_path / "run")
  assert "No checkpoint was saved yet" in str(e.value) and "step None" not in str(e.value)


def test_main_prints_a_short_headline_per_split(tmp_path, capsys):
  from echojax.train import main
  workdir = tmp_path / "run"
  main(["--config", HELPER, "--workdir", str(workdir), "--config.train.num_steps=4",
        "--config.train.checkpoint_every=2", "--config.evals.val.every_steps=2"])
  out = capsys.readouterr().out.strip().splitlines()
  val = [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines() if '"val"' in ln]
  best = min(val, key=lambda r: r["mae"])
  tail = out[-3:]
  assert tail[0].startswith("train step 4: loss ")
  assert tail[1].startswith("val step 4: loss ") and f"mae {val[-1]['mae']:.4g} (best {best['mae']:.4g} at step " \
      f"{best['step']})" in tail[1], tail
  assert tail[2] == f"all metrics: {workdir / 'metrics.jsonl'}"
  assert all(len(ln) < 200 for ln in tail) and not any(ln.startswith("{") for ln in out)


def test_only_process_0_rewrites_metrics_jsonl_on_resume(tmp_path, monkeypatch):
  """On a multi-host resume every process opens the log; only process 0 may cut it back to the resumed step (two
  processes rewriting one shared file raced and could leave it garbled)."""
  import jax

  from echojax import workdir as workdir_lib

  log = tmp_path / "metrics.jsonl"
  text = "".join(json.dumps({"step": s, "split": "train", "loss": 1.0}) + "\n" for s in range(1, 7))
  log.write_text(text)
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  workdir_lib.MetricsWriter(tmp_path, 4).close()
  assert log.read_text() == text  # process 1 leaves it alone
  monkeypatch.setattr(jax, "process_index", lambda: 0)
  workdir_lib.MetricsWriter(tmp_path, 4).close()
  assert [json.loads(ln)["step"] for ln in log.read_text().splitlines()] == [1, 2, 3, 4]
