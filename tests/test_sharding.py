"""Sharding: mesh building, rule matching, and one train step (BatchNorm model) on 8 fake CPU devices with data
parallelism and with FSDP equal to the same step on 1 device."""

import functools

import jax
import numpy as np
import pytest

from echojax import sharding
from echojax.config import load_config
from echojax.errors import UserError
from echojax.optim import make_optimizer
from echojax.tasks import get_task
from echojax.run import build_model, numeric
from echojax.train import make_train_step, setup_state

HELPER = "tests/helpers/trainer.py:smoke"


def test_make_mesh_fills_minus_one_and_rejects_bad_sizes():
  mesh = sharding.make_mesh([("data", -1), ("fsdp", 2)])
  assert dict(mesh.shape) == {"data": 4, "fsdp": 2}
  with pytest.raises(UserError, match="config.mesh"):
    sharding.make_mesh([("data", -1), ("fsdp", 3)])


def test_fsdp_rule_shards_largest_divisible_dim_and_unmatched_replicate():
  mesh = sharding.make_mesh([("data", -1), ("fsdp", 2)])
  tree = {"conv": {"kernel": np.zeros((3, 3, 3, 8)), "bias": np.zeros((8,))}, "head": {"kernel": np.zeros((5, 3))}}
  sh = sharding.param_shardings(tree, mesh, [(".*kernel", "fsdp")])
  assert sh["conv"]["kernel"].spec == sharding.P(None, None, None, "fsdp")
  assert sh["conv"]["bias"].spec == sharding.P()  # no rule matched -> replicated
  assert sh["head"]["kernel"].spec == sharding.P()  # no dim divisible by 2 -> replicated


def test_batch_size_not_divisible_is_a_user_error():
  mesh = sharding.make_mesh([("data", -1)])
  with pytest.raises(UserError, match="not divisible by the 8 devices"):
    sharding.check_batch_size(6, mesh)


@functools.lru_cache(maxsize=None)
def _reference():
  state, m, _ = _one_step([("data", 1)], [(".*", "replicate")], jax.devices()[:1])
  return jax.device_get(state), jax.device_get(m)


def _one_step(mesh_spec, rules, devices):
  config = load_config(HELPER, {"sharding.rules": repr(rules)})
  task = get_task(config)
  task.prepare({"ef": np.asarray([30.0, 60.0])})
  model = build_model(config, task)
  tx, sched = make_optimizer(config.optim, 4, 10)
  mesh = sharding.make_mesh(mesh_spec, devices)
  from tests.helpers.trainer import FakeLoader
  batch = next(iter(FakeLoader(config.data, "train", train=True, seed=0)))
  sample_x = jax.ShapeDtypeStruct(batch["video"].shape, np.float32)
  state, shardings, _ = setup_state(config, model, tx, task, mesh, sample_x, None)
  bsh = sharding.batch_sharding(mesh)
  step = jax.jit(make_train_step(model, tx, task, config, sched), in_shardings=(shardings, bsh),
                 out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=(0,))
  for _ in range(2):  # two steps: the second uses updated BatchNorm statistics and momentum
    state, metrics = step(state, sharding.global_batch(numeric(batch), bsh))
  return state, metrics, shardings


@pytest.mark.parametrize("mesh_spec,rules", [
    ([("data", -1)], [(".*", "replicate")]),
    ([("data", -1), ("fsdp", 2)], [(".*kernel", "fsdp"), (".*", "fsdp")]),
], ids=["data_parallel", "fsdp"])
def test_sharded_step_equals_single_device_step(mesh_spec, rules):
  ref_state, ref_m = _reference()
  state, m, shardings = _one_step(mesh_spec, rules, jax.devices())
  assert len(jax.devices()) == 8
  if "fsdp" in dict(mesh_spec):
    specs = [s.spec for s in jax.tree_util.tree_leaves(shardings["params"])]
    assert any("fsdp" in tuple(sp) for sp in specs), specs
    kernel = jax.tree_util.tree_leaves(state["params"])[1]
    assert len(kernel.sharding.device_set) == 8
  np.testing.assert_allclose(float(m["loss"]), float(ref_m["loss"]), rtol=1e-5)
  for name in ("params", "batch_stats", "opt_state"):
    got, want = jax.device_get(state[name]), jax.device_get(ref_state[name])
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6), got, want)
  assert int(state["step"]) == 2
