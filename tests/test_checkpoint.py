"""Checkpoints: latest/best slots and metadata, a checkpoint saved on 8 devices (FSDP) restored on 1 device
through an abstract tree carrying the target shardings, and SIGKILL mid-run + rerun == uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from echojax import sharding
from echojax.checkpoint import Checkpointer
from echojax.errors import UserError
from echojax.config import load_config
from echojax.optim import make_optimizer
from echojax.tasks import get_task
from echojax.run import build_model, numeric
from echojax.train import make_train_step, setup_state

REPO = Path(__file__).resolve().parent.parent
HELPER = "tests/helpers/trainer.py:smoke"


def _records(workdir):
  return [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]


def _fsdp_state(rules=((".*", "fsdp"),)):
  """A BatchNorm model's state after one step on an 8-device data x fsdp mesh."""
  config = load_config(HELPER, {"mesh": "[('data', -1), ('fsdp', 2)]", "sharding.rules": repr(list(rules))})
  task = get_task(config)
  task.prepare({"ef": np.asarray([30.0, 60.0])})
  model = build_model(config, task)
  tx, sched = make_optimizer(config.optim, 4, 10)
  mesh = sharding.make_mesh(config.mesh)
  from tests.helpers.trainer import FakeLoader
  batch = next(iter(FakeLoader(config.data, "train", train=True, seed=0)))
  state, shardings, _ = setup_state(config, model, tx, task, mesh,
                                    jax.ShapeDtypeStruct(batch["video"].shape, np.float32), None)
  bsh = sharding.batch_sharding(mesh)
  step = jax.jit(make_train_step(model, tx, task, config, sched), in_shardings=(shardings, bsh),
                 out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=(0,))
  state, _ = step(state, sharding.global_batch(numeric(batch), bsh))
  return config, state


class _Iterator:
  """Anything with grain's get_state() -> bytes / set_state(bytes)."""

  def __init__(self, pos):
    self.pos = pos

  def get_state(self) -> bytes:
    return json.dumps({"pos": self.pos}).encode()

  def set_state(self, state: bytes) -> None:
    self.pos = json.loads(state)["pos"]


def test_latest_best_meta_and_data_iterator_roundtrip(tmp_path):
  _, state = _fsdp_state()
  ck = Checkpointer(tmp_path, keep=2)
  for step in (1, 2, 3):
    ck.save(step, state, {"step": step}, data=_Iterator(10 * step))
  ck.save(2, state, {"step": 2, "best": True}, data=_Iterator(20), best=True)
  ck.wait()
  assert ck.latest_step() == 3 and ck.best_step() == 2
  assert sorted(ck.latest.all_steps()) == [2, 3]  # keep=2
  # the iterator position is grain's own orbax item, one file per process, not text inside the meta JSON
  assert json.loads((tmp_path / "checkpoints" / "3" / "data" / "process_0-of-1.json").read_text()) == {"pos": 30}
  step, meta = ck.restore_meta()
  assert step == 3 and meta == {"step": 3}
  it = _Iterator(0)
  ck.restore_data(it)
  assert it.pos == 30
  assert ck.restore_meta("best")[1]["best"] is True
  r = ck.restore("best", ("params",))  # numpy, stored shapes, no target needed
  assert r.step == 2 and r.which == "best" and set(r.tree) == {"params"}
  want = jax.tree_util.tree_leaves(state["params"])
  got = jax.tree_util.tree_leaves(r.tree["params"])
  assert len(got) == len(want) and all(isinstance(g, np.ndarray) for g in got)
  for g, w in zip(got, want):
    np.testing.assert_array_equal(g, np.asarray(w))
  ck.close()


def test_pick_chooses_best_latest_auto(tmp_path, caplog):
  _, state = _fsdp_state()
  ck = Checkpointer(tmp_path, keep=2)
  with pytest.raises(UserError, match="no latest checkpoint"):
    ck.pick("latest")
  ck.save(1, state, {"step": 1})
  ck.wait()
  assert ck.pick("auto") == ("latest", 1)
  assert ck.pick("best") == ("latest", 1) and "no best checkpoint" in caplog.text
  ck.save(1, state, {"step": 1}, best=True)
  ck.save(3, state, {"step": 3})
  ck.wait()
  assert ck.pick("auto") == ("best", 1) and ck.pick("best") == ("best", 1) and ck.pick("latest") == ("latest", 3)
  with pytest.raises(UserError, match="use one of best, latest, auto"):
    ck.pick("newest")
  ck.close()


RESTORE_ON_ONE = textwrap.dedent("""
    import jax, numpy as np, sys
    from echojax import sharding
    from echojax.checkpoint import Checkpointer, abstract_like
    from echojax.config import load_config
    from echojax.optim import make_optimizer
    from echojax.tasks import get_task
    from echojax.run import build_model
    from echojax.train import make_init_fn, state_shardings
    assert len(jax.devices()) == 1, jax.devices()
    config = load_config("tests/helpers/trainer.py:smoke")
    task = get_task(config)
    task.prepare({"ef": np.asarray([45.0])})
    model = build_model(config, task)
    tx, _ = make_optimizer(config.optim, 4, 10)
    abstract = jax.eval_shape(make_init_fn(model, tx, task, jax.ShapeDtypeStruct((8, 4, 8, 8, 3), np.float32), 0))
    mesh = sharding.make_mesh([("data", -1)])
    target = abstract_like(abstract, state_shardings(abstract, mesh, [(".*", "replicate")]))
    r = Checkpointer(sys.argv[1], read_only=True).restore("latest", tuple(target), target)
    step, state = r.step, r.tree
    want = np.load(sys.argv[2])
    got = {sharding.path_str(p): np.asarray(x) for p, x in
           jax.tree_util.tree_flatten_with_path({"params": state["params"], "bs": state["batch_stats"]})[0]}
    assert sorted(got) == sorted(want.files), (sorted(got), want.files)
    for k in want.files:
      np.testing.assert_array_equal(got[k], want[k])
    leaf = jax.tree_util.tree_leaves(state["params"])[0]
    assert len(leaf.sharding.device_set) == 1
    print("restored", step, len(want.files), "arrays on", jax.devices())
""")


def test_checkpoint_saved_on_8_devices_restores_on_1(tmp_path):
  _, state = _fsdp_state()
  kernels = [x for x in jax.tree_util.tree_leaves(state["params"]) if x.ndim > 1]
  assert any(not x.sharding.is_fully_replicated for x in kernels), "FSDP should shard some parameters"
  assert len(jax.devices()) == 8
  ck = Checkpointer(tmp_path / "run")
  ck.save(1, state, {"step": 1})
  ck.wait()
  ck.close()
  flat = {sharding.path_str(p): np.asarray(x) for p, x in
          jax.tree_util.tree_flatten_with_path({"params": state["params"], "bs": state["batch_stats"]})[0]}
  np.savez(tmp_path / "want.npz", **flat)
  env = {**os.environ, "PYTHONPATH": str(REPO), "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  r = subprocess.run([sys.executable, "-c", RESTORE_ON_ONE, str(tmp_path / "run"), str(tmp_path / "want.npz")],
                     cwd=REPO, env=env, capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "restored 1" in r.stdout


def _final_state(workdir):
  steps = sorted(int(p.name) for p in (Path(workdir) / "checkpoints").iterdir() if p.name.isdigit())
  return steps[-1], ocp.StandardCheckpointer().restore((Path(workdir) / "checkpoints" / str(steps[-1]) /
                                                        "state").absolute())


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_killed_or_preempted_then_rerun_matches_uninterrupted_run(tmp_path, sig):
  """SIGKILL: the rerun resumes from the last periodic checkpoint. SIGTERM (preemption, scancel): the run saves a
  checkpoint at the step it is on, says so, exits 0, and the rerun resumes from there."""
  args = ["--config", HELPER, "--config.train.num_steps=16", "--config.train.checkpoint_every=2",
          "--config.train.log_every=2", "--config.evals.val.every_steps=8", "--config.data.sleep=0.25"]
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  cmd = lambda wd: [sys.executable, "-m", "echojax.train", *args, "--workdir", str(wd)]
  full, killed = tmp_path / "full", tmp_path / "killed"
  out = subprocess.DEVNULL
  p_full = subprocess.Popen(cmd(full), cwd=REPO, env=env, stdout=out, stderr=out)
  p_kill = subprocess.Popen(cmd(killed), cwd=REPO, env=env, stdout=out, stderr=subprocess.PIPE)
  deadline = time.time() + 300  # a loaded 2-core CI machine can take minutes to import, compile and step
  ckpts = killed / "checkpoints"
  while time.time() < deadline:  # wait for a finished checkpoint (orbax renames tmp dirs when complete)
    done = [int(p.name) for p in ckpts.iterdir() if p.name.isdigit()] if ckpts.is_dir() else []
    if done and max(done) >= 4:
      break
    if p_kill.poll() is not None:
      pytest.fail(f"training exited before it could be killed: {p_kill.stderr.read().decode()[-2000:]}")
    time.sleep(0.05)
  else:
    pytest.fail("no checkpoint appeared in time")
  before = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
  p_kill.send_signal(getattr(signal, sig))
  code = p_kill.wait()
  killed_at = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
  assert killed_at < 16, "the run finished before it was killed"
  if sig == "SIGTERM":
    err = p_kill.stderr.read().decode()
    assert code == 0 and "preempted (SIGTERM) at step " in err and "rerun the same command to resume" in err, err[-2000:]
    assert killed_at > before  # saved where it stopped, not only at the last periodic checkpoint
    last_logged = max(r["step"] for r in _records(killed) if r["split"] == "train")
    assert last_logged == killed_at  # the stop logged its window before saving
  assert subprocess.run(cmd(killed), cwd=REPO, env=env, capture_output=True).returncode == 0
  assert p_full.wait() == 0

  step_a, state_a = _final_state(full)
  step_b, state_b = _final_state(killed)
  assert step_a == step_b == 16
  for name in ("params", "batch_stats", "opt_state"):
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6,
                                                                   atol=1e-7), state_a[name], state_b[name])
  strip = lambda recs: [{k: v for k, v in r.items() if k != "clips_per_s"} for r in recs]
  recs_a, recs_b = strip(_records(full)), strip(_records(killed))
  assert recs_a[-1] == recs_b[-1]
  if sig == "SIGKILL":
    assert recs_a == recs_b  # the rerun dropped lines after its checkpoint, so the whole log matches
  else:  # the preempted run logged a partial window at its stop step, so logging windows differ from there on
    assert [r for r in recs_b if r["step"] < before] == [r for r in recs_a if r["step"] < before]


def test_checkpoints_from_before_the_data_item_resume_their_iterator(tmp_path):
  """Checkpoints written before the iterator became grain's own item kept it as latin-1 text in meta['data_state']
  ({"__bytes__": ...}); they still put a loader back where it was."""
  _, state = _fsdp_state()
  ck = Checkpointer(tmp_path, keep=2)
  ck.save(5, state, {"step": 5, "data_state": {"__bytes__": json.dumps({"pos": 7})}})  # the old layout
  ck.wait()
  assert not (tmp_path / "checkpoints" / "5" / "data").exists()
  it = _Iterator(0)
  ck.restore_data(it)
  assert it.pos == 7
  ck.save(6, state, {"step": 6})  # neither layout: a named error, not a silent restart of the data stream
  ck.wait()
  with pytest.raises(UserError, match="holds no data-iterator state"):
    ck.restore_data(_Iterator(0))
  ck.close()
