"""Trainer: end-to-end smoke run (metrics JSONL, TensorBoard, checkpoints, output-bias init), non-finite stop
keeping the last good checkpoint, device prefetch and the checkpointed data position, the profiler switch, early
stopping, task losses. (Resume-after-SIGKILL lives in test_checkpoint.py.)"""

import json
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from echojax import losses
from echojax.config import load_config
from echojax.errors import UserError
from echojax.tasks import get_task
from echojax.tasks.base import find_head_bias
from echojax.tasks.classification import balanced_class_weights
from echojax.train import train

HELPER = "tests/helpers/trainer.py:smoke"


def _records(workdir):
  return [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]


def test_smoke_run_logs_checkpoints_and_learns_bias(tmp_path, caplog):
  config = load_config(HELPER)
  jax.config.update("jax_log_compiles", True)
  try:
    with caplog.at_level(logging.WARNING):
      last = train(config, tmp_path)
  finally:
    jax.config.update("jax_log_compiles", False)
  compiles = [r.getMessage() for r in caplog.records if "Compiling jit(step_fn)" in r.getMessage()]
  assert len(compiles) == 1, compiles  # one compile of the train step for the one batch shape
  recs = _records(tmp_path)
  assert [r["step"] for r in recs if r["split"] == "train"] == [2, 4, 6]
  assert [r["step"] for r in recs if r["split"] == "val"] == [3, 6]
  assert all(np.isfinite(r["loss"]) and r["clips_per_s"] > 0 for r in recs if r["split"] == "train")
  assert last["val"]["step"] == 6 and "mae" in last["val"] and "ef_lt_50/auroc" in last["val"]
  assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [4, 6]
  assert [p.name for p in (tmp_path / "best").iterdir() if p.name.isdigit()]
  saved = json.loads((tmp_path / "config.json").read_text())
  # The train-split EF mean was computed and recorded (output bias init), so evaluate/resume reuse it.
  from tests.helpers.trainer import FakeLoader
  want = FakeLoader(config.data, "train", train=True, seed=0).targets(["ef"])["ef"].mean()
  assert saved["task"]["output_bias"] == pytest.approx(float(want), rel=1e-5)


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  config = load_config(HELPER, {"data.nan_at_batch": "5", "train.num_steps": "10", "evals.val.every_steps": "0"})
  with pytest.raises(UserError, match=r"non-finite loss or gradient at step 5.*last good checkpoint is step 4"):
    train(config, tmp_path)
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert steps[-1] == 4
  restored = ocp.StandardCheckpointer().restore((tmp_path / "checkpoints" / "4" / "state").absolute())
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(restored["params"]))


def _steps(folder):
  return sorted(int(p.name) for p in Path(folder).iterdir() if p.name.isdigit()) if Path(folder).is_dir() else []


def _data_position(workdir, step):
  return json.loads((Path(workdir) / "checkpoints" / str(step) / "data" / "process_0-of-1.json").read_text())


def test_a_nonfinite_step_stops_before_the_eval_and_the_preemption_save_of_its_window(tmp_path, monkeypatch):
  """The step keeps no old state, so after the NaN at step 5 the state in memory is garbage: the preemption at
  step 6 (a save) and nothing after the last good checkpoint (step 4) is evaluated, logged or written."""
  from echojax.checkpoint import PreemptionFlag

  monkeypatch.setattr(PreemptionFlag, "check", lambda self, step: step >= 6)
  config = load_config(HELPER, {"data.nan_at_batch": "5", "train.num_steps": "12", "train.log_every": "100",
                                "train.checkpoint_every": "4", "evals.val.every_steps": "4"})
  with pytest.raises(UserError, match=r"non-finite loss or gradient at step 5.*last good checkpoint is step 4"):
    train(config, tmp_path)
  assert _steps(tmp_path / "checkpoints") == [4] and _steps(tmp_path / "best") == [4]
  assert max(r["step"] for r in _records(tmp_path)) == 4
  state = ocp.StandardCheckpointer().restore((tmp_path / "checkpoints" / "4" / "state").absolute())
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(state))
  # 32 records in batches of 8: four batches trained, however many were read ahead by then
  assert _data_position(tmp_path, 4) == {"epoch": 0, "offset": 32}


def test_device_prefetch_trains_the_same_and_checkpoints_the_trained_batches_position(tmp_path):
  """data.device_prefetch=2 reads batches ahead of the step; the run is the same as without, and each checkpoint
  records the data position after its own last batch (which a resume continues from), not the prefetched ones."""
  runs = {}
  for depth in (0, 2):
    train(load_config(HELPER, {"data.device_prefetch": str(depth), "evals.val.every_steps": "0"}),
          tmp_path / str(depth))
    runs[depth] = tmp_path / str(depth)
  assert _data_position(runs[2], 4) == {"epoch": 0, "offset": 32}  # 4 batches of 8 of 32: the first epoch
  assert _data_position(runs[2], 6) == {"epoch": 1, "offset": 16}
  for step in (4, 6):
    assert _data_position(runs[0], step) == _data_position(runs[2], step)
  strip = [{k: v for k, v in r.items() if k != "clips_per_s"} for r in _records(runs[0])]
  assert strip == [{k: v for k, v in r.items() if k != "clips_per_s"} for r in _records(runs[2])]
  a, b = (ocp.StandardCheckpointer().restore((runs[d] / "checkpoints" / "6" / "state").absolute()) for d in (0, 2))
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def test_profile_steps_writes_a_trace_under_workdir_profile(tmp_path):
  config = load_config(HELPER, {"train.profile_steps": "2", "train.profile_start": "1",
                                "evals.val.every_steps": "0"})
  train(config, tmp_path)
  runs = list((tmp_path / "profile" / "plugins" / "profile").iterdir())
  assert len(runs) == 1
  assert list(runs[0].glob("*.xplane.pb")) and list(runs[0].glob("*.trace.json.gz"))


class _FinitePasses:
  """A custom loader of 3 batches per pass whose iter() starts a new pass (a fresh generator)."""

  def __init__(self):
    self.passes = 0

  def __iter__(self):
    self.passes += 1
    for i in range(3):
      self.pos = (self.passes, i)
      yield {"x": np.full((8, 2), 10 * self.passes + i, np.float32), "name": np.asarray(["a"] * 8)}

  def get_state(self) -> bytes:
    return json.dumps(self.pos).encode()


@pytest.mark.parametrize("depth", [0, 2])
def test_device_batches_cross_passes_in_order_with_each_batchs_own_position(depth):
  from echojax import sharding
  from echojax.feed import HostBatches, device_batches

  loader = _FinitePasses()
  host = HostBatches(loader)
  assert float(host.peek()["x"][0, 0]) == 10  # a probe (custom loaders without spec()) is trained on first
  got = list(device_batches(host, sharding.batch_sharding(sharding.make_mesh([("data", -1)])), depth, 7))
  assert [float(b["x"][0, 0]) for b, _ in got] == [10, 11, 12, 20, 21, 22, 30]
  assert [json.loads(s) for _, s in got] == [[1, 0], [1, 1], [1, 2], [2, 0], [2, 1], [2, 2], [3, 0]]
  assert all(set(b) == {"x"} and b["x"].shape == (8, 2) for b, _ in got)  # strings never go to the devices
  assert loader.pos == (3, 0)  # nothing read beyond the 7 batches asked for


def test_early_stopping_after_patience_evals(tmp_path):
  # "n" (number of val videos) never improves, so the run stops after 2 evaluations without improvement.
  config = load_config(HELPER, {"train.num_steps": "20", "evals.val.every_steps": "2", "eval.best_metric": "n",
                                "eval.best_mode": "max", "train.early_stopping_patience": "2"})
  last = train(config, tmp_path)
  assert last["train"]["step"] == 6
  assert max(r["step"] for r in _records(tmp_path)) == 6
  meta = json.loads((tmp_path / "checkpoints" / "6" / "meta" / "metadata").read_text()) \
      if (tmp_path / "checkpoints" / "6" / "meta" / "metadata").exists() else None
  assert meta is None or meta["early_stopping"]["bad_evals"] == 2


@pytest.mark.slow
def test_init_from_loads_another_runs_weights(tmp_path):
  train(load_config(HELPER, {"train.num_steps": "2", "evals.val.every_steps": "0"}), tmp_path / "a")
  # lr 0: run b's params stay exactly what it was initialised with.
  train(load_config(HELPER, {"train.num_steps": "2", "evals.val.every_steps": "0", "optim.lr": "0.0",
                             "optim.weight_decay": "0.0", "init_from": str(tmp_path / "a")}), tmp_path / "b")
  a = ocp.StandardCheckpointer().restore((tmp_path / "a" / "checkpoints" / "2" / "state").absolute())
  b = ocp.StandardCheckpointer().restore((tmp_path / "b" / "checkpoints" / "2" / "state").absolute())
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)),
                         a["params"], b["params"])


def test_task_losses_and_prepared_constants():
  w = balanced_class_weights(np.array([0, 0, 0, 1]), 2)
  np.testing.assert_allclose(w, [4 / 6, 4 / 2])
  logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  labels = jnp.array([0, 1, 1])
  logp = jax.nn.log_softmax(logits)
  # class weights: sum_i w_{y_i} * nll_i / sum_i w_{y_i} (torch CrossEntropyLoss(weight=...) convention)
  want = float(-(w[0] * logp[0, 0] + w[1] * logp[1, 1] + w[1] * logp[2, 1]) / (w[0] + 2 * w[1]))
  got = float(losses.softmax_cross_entropy(logits, labels, class_weights=w))
  assert got == pytest.approx(want, rel=1e-6)
  smooth = float(losses.softmax_cross_entropy(logits, labels, label_smoothing=0.2))
  target = np.eye(2)[np.asarray(labels)] * 0.8 + 0.1
  assert smooth == pytest.approx(float(-(target * logp).sum(-1).mean()), rel=1e-6)
  # Padding rows (valid=False) do not change the loss.
  padded = losses.softmax_cross_entropy(jnp.concatenate([logits, logits[:1]]), jnp.array([0, 1, 1, 1]),
                                        weight=jnp.array([1, 1, 1, 0]))
  assert float(padded) == pytest.approx(float(losses.softmax_cross_entropy(logits, labels)), rel=1e-6)

  cfg = load_config("tests/helpers/trainer.py:task=ef_classification")
  task = get_task(cfg)
  assert task.num_outputs == 2 and task.needs_train_targets()
  task.prepare({"ef": np.array([30.0, 55.0, 60.0, 65.0])})  # 1 reduced (class 1), 3 at/above 50 (class 0)
  np.testing.assert_allclose(task.class_weights, [4 / 6, 2.0])
  np.testing.assert_array_equal(task.labels({"ef": jnp.array([49.9, 50.0])}), [1, 0])

  reg = get_task(load_config(HELPER))
  reg.prepare({"ef": np.array([40.0, 60.0])})
  params = {"Dense_0": {"bias": jnp.zeros(1), "kernel": jnp.zeros((2, 1))}, "head": {"bias": jnp.zeros(1)}}
  assert find_head_bias(params, 1)[0].key == "head"
  assert float(reg.init_params(params)["head"]["bias"][0]) == 50.0


def test_focal_loss_formula_and_task_config():
  """Softmax focal loss = -alpha_y (1 - p_y)^gamma log p_y, averaged over valid rows; gamma 0 without alpha is
  cross-entropy; the task takes loss='focal' with focal_gamma / focal_alpha (a list, a number or 'balanced')."""
  logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5], [1.0, 1.0, 1.0], [3.0, -2.0, 0.0]])
  labels = jnp.array([0, 1, 2, 1])
  p = np.asarray(jax.nn.softmax(logits))[np.arange(4), np.asarray(labels)]
  alpha = np.array([0.25, 0.5, 1.0])
  want = np.mean(-alpha[np.asarray(labels)] * (1 - p) ** 2 * np.log(p))
  assert float(losses.softmax_focal_loss(logits, labels, gamma=2.0, alpha=alpha)) == pytest.approx(want, rel=1e-5)
  assert float(losses.softmax_focal_loss(logits, labels, gamma=0.0)) == pytest.approx(
      float(losses.softmax_cross_entropy(logits, labels)), rel=1e-6)
  # hard examples weigh more than with cross-entropy: the easy row's share of the loss shrinks
  per = [float(losses.softmax_focal_loss(logits[i : i + 1], labels[i : i + 1])) for i in range(4)]
  ce = [float(losses.softmax_cross_entropy(logits[i : i + 1], labels[i : i + 1])) for i in range(4)]
  assert per[0] / per[3] < ce[0] / ce[3]
  padded = losses.softmax_focal_loss(jnp.concatenate([logits, logits[:1]]), jnp.array([0, 1, 2, 1, 2]),
                                     weight=jnp.array([1, 1, 1, 1, 0]))
  assert float(padded) == pytest.approx(float(losses.softmax_focal_loss(logits, labels)), rel=1e-6)

  cfg = load_config("tests/helpers/trainer.py:task=classification")
  with cfg.unlocked():
    cfg.task.loss, cfg.task.focal_gamma, cfg.task.focal_alpha, cfg.task.label_smoothing = "focal", 1.5, "balanced", 0.0
  task = get_task(cfg)
  assert task.needs_train_targets()
  n = task.num_outputs
  task.prepare({task.label_key: np.array([0] * 3 + list(range(1, n)))})
  assert task.focal_alpha is not None and task.focal_alpha[0] < task.focal_alpha[1]
  assert task.prepared_constants()["focal_alpha"] == pytest.approx(list(task.focal_alpha))
  batch = {task.label_key: jnp.zeros(2, jnp.int32), "valid": jnp.ones(2, bool)}
  got, _ = task.loss(jnp.zeros((2, n)), batch)
  assert float(got) == pytest.approx(task.focal_alpha[0] * (1 - 1 / n) ** 1.5 * np.log(n), rel=1e-5)
  # focal_alpha is the focal loss's: with cross-entropy it neither weights the classes nor needs train targets
  with cfg.unlocked():
    cfg.task.loss = "cross_entropy"
  ce = get_task(cfg)
  assert not ce.needs_train_targets() and ce.focal_alpha is None and ce.class_weights is None
  for bad, match in [({"loss": "hinge"}, "task.loss"), ({"loss": "focal", "focal_alpha": [1.0]}, "focal_alpha"),
                     ({"loss": "focal", "class_weights": "balanced"}, "focal_alpha"),
                     ({"loss": "focal", "focal_gamma": -1.0}, "focal_gamma")]:
    c = load_config("tests/helpers/trainer.py:task=classification")
    with c.unlocked():
      c.task.label_smoothing = 0.0
      c.task.update(bad)
    with pytest.raises(UserError, match=match):
      get_task(c)


@pytest.mark.slow
def test_echonet_ef_smoke_end_to_end_on_synthetic_phantoms(tmp_path, capsys):
  """The real recipe's smoke variant: phantoms generated + prepared into the (per-session) cache, R(2+1)D-18 at
  width 8, output bias initialised to the train-split EF mean, validation and checkpoints."""
  config = load_config("echonet_ef:smoke")
  last = train(config, tmp_path / "run")
  assert "using synthetic EchoNet-Dynamic phantoms" in capsys.readouterr().err
  assert last["train"]["step"] == 4 and np.isfinite(last["train"]["loss"])
  assert np.isfinite(last["val"]["mae"])
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  from echojax.run import make_loader
  from echojax.config import from_json
  train_ef = make_loader(from_json(json.dumps(saved)), "train", train=True).targets(["ef"])["ef"]
  assert saved["task"]["output_bias"] == pytest.approx(float(np.mean(train_ef)), rel=1e-5)
  state = ocp.StandardCheckpointer().restore((tmp_path / "run" / "checkpoints" / "4" / "state").absolute())
  assert abs(float(np.asarray(state["params"]["head"]["bias"])[0]) - saved["task"]["output_bias"]) < 1.0
