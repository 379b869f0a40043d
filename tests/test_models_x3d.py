"""X3D (echojax.models.x3d, echoforge.models.x3d): sizes, frame masks, torch parity and export.

(The golden parity case ``x3d_small`` runs in test_parity_zoo.py.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import echoforge
from echoforge import archs
from echojax.convert import random_variables
from echojax.errors import UserError
from echojax.export import export_variables, to_module
from echojax.models import get_model

SMALL = {"width": 8, "blocks": [1, 2, 1, 1], "head_dim": 16, "num_classes": 3}


def _n(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


def _variables(model, x, seed=0):
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  return random_variables(abstract, seed)


def _clip(shape, seed=1) -> np.ndarray:
  return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_table_entry():
  a = archs.get("x3d")
  assert a.family == "x3d" and a.video and not a.fixed


def test_full_size_params_and_shapes():
  """X3D-M/S/XS network: 3.77M parameters with a 400-class head (the paper's 3.8M), well under 5M."""
  x = jnp.zeros((1, 16, 112, 112, 3))
  for classes, params in ((400, 3_768_690), (5, 2_959_335)):
    model = get_model("x3d", num_classes=classes)
    (out, aux), v = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x, train=False))
    assert _n(v["params"]) == params
    assert out.shape == (1, classes) and out.dtype == jnp.float32
    assert aux["features"].shape == (1, 2048)
  from echoforge.models import build

  module = build("x3d", num_classes=400)
  assert sum(p.numel() for p in module.parameters()) == 3_768_690


def test_features_output_and_errors():
  model = get_model("x3d", **{**SMALL, "num_classes": 0})
  (out, aux), _ = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), jnp.zeros((2, 4, 32, 32, 3))))
  assert out.shape == (2, 16) and aux["features"].shape == (2, 16)
  with pytest.raises(UserError, match="videos"):
    get_model("x3d", **SMALL).init(jax.random.key(0), jnp.zeros((2, 32, 32, 3)))
  with pytest.raises(UserError, match="stem_kernel_t"):
    get_model("x3d", **SMALL, stem_kernel_t=4).init(jax.random.key(0), jnp.zeros((1, 4, 32, 32, 3)))


@pytest.mark.slow
def test_trains_one_step_with_batch_stats():
  model = get_model("x3d", **SMALL)
  x = jnp.asarray(_clip((2, 4, 32, 32, 3)))
  v = model.init(jax.random.key(0), x, train=False)
  (out, aux), new = model.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)})
  assert out.shape == (2, 3) and np.isfinite(np.asarray(out)).all()
  before = jax.tree_util.tree_leaves(v["batch_stats"])
  after = jax.tree_util.tree_leaves(new["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))


@pytest.mark.slow
def test_padded_frames_do_not_change_the_output():
  """Eval mode: a clip padded at the end (garbage in the padding) gives its valid frames' output, on both sides."""
  model = get_model("x3d", **SMALL)
  x = _clip((2, 6, 32, 32, 3))
  variables = _variables(model, x, 2)
  x[1, 4:] = np.nan
  mask = np.array([[True] * 6, [True] * 4 + [False] * 2])
  y, _ = jax.jit(lambda v, x, m: model.apply(v, x, train=False, mask=m))(variables, x, mask)
  y = np.asarray(y)
  y_short, _ = model.apply(variables, x[1:, :4], train=False)
  y_full, _ = model.apply(variables, x[:1], train=False)
  np.testing.assert_allclose(y[1], np.asarray(y_short)[0], atol=1e-5)
  np.testing.assert_allclose(y[0], np.asarray(y_full)[0], atol=1e-5)
  module = to_module(variables, "x3d", SMALL)
  with torch.no_grad():
    y_torch = module(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))), torch.from_numpy(mask)).numpy()
  assert np.isfinite(y_torch).all()
  assert float(np.max(np.abs(y_torch - y))) <= 1e-4


def test_export_and_load(tmp_path):
  model = get_model("x3d", **SMALL)
  x = _clip((1, 4, 32, 32, 3))
  variables = _variables(model, x, 3)
  spec = {"layout": "NCTHW", "shape": [3, 4, 32, 32], "size": [32, 32], "frames": 4, "channels": 3}
  out = export_variables(variables, "X3DTiny", "x3d", SMALL, registry=tmp_path, input=spec)
  loaded = echoforge.load_model("X3DTiny", registry=tmp_path)
  assert loaded.echoforge_manifest["parity"]["max_abs_diff"] <= 1e-4 and out.name == "v1"
  y_jax, _ = model.apply(variables, x, train=False)
  with torch.no_grad():
    y_torch = loaded(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))).numpy()
  assert float(np.max(np.abs(y_torch - np.asarray(y_jax)))) <= 1e-4
