"""Spatio-temporal fusion gates and the temporal encoders' frame-mask handling.

Everything runs on per-frame features (B, T, D) (the models skip the CNN backbone for 3-D input), so the tests are
cheap: tiny widths, 4 frames, one jit compile per model and mode.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echojax.errors import UserError
from echojax.models import get_model
from echojax.models.spatiotemporal import parse_mode

B, T, D, C = 3, 4, 16, 5
KEY = jax.random.PRNGKey(0)
FEATS = jax.random.normal(KEY, (B, T, D))
MASK = jnp.array([[True, True, True, False], [True, True, False, False], [True, True, True, True]])
TEMPORAL_KW = {
  "mhsa": dict(width=16, depth=1, num_heads=2, mlp_dim=32, max_len=8),
  "tcn": dict(width=16, dilations=(1, 2, 4, 8)),
  "cnn_lstm": dict(hidden_size=16),
}


def fusion(mode: str, temporal: str = "mhsa", **kw):
  return get_model("spatiotemporal", num_classes=C, mode=mode, temporal=temporal,
                   temporal_kwargs=TEMPORAL_KW[temporal], **kw)


def dynamic():
  """The canonical dynamic-gate model shared by several tests (dropout on, so train != eval)."""
  return fusion("dynamic", dropout=0.5)


@functools.lru_cache(maxsize=None)
def _compiled(model):
  """(variables, apply(v, x, mask, key, train)) for a model, built once per model.

  Eager, not jitted: these models are tiny, and eager op-by-op execution reuses one compile cache across all the
  models in this file, which is several times faster than compiling each model as a whole on a busy CPU.
  """
  v = model.init({"params": KEY, "dropout": KEY}, FEATS, train=False, mask=MASK)

  def run(v, x, mask, key, train=False):
    return model.apply(v, x, train=train, mask=mask, rngs={"dropout": key})

  return v, run


# ---------------------------------------------------------------------------------------------------- gates

@pytest.mark.parametrize("mode", ["dynamic", "learned", "fixed:0.3"])
def test_gates_are_valid_weights_and_mix_the_streams(mode):
  v, run = _compiled(dynamic() if mode == "dynamic" else fusion(mode))
  out, aux = run(v, FEATS, MASK, KEY)
  gate = np.asarray(aux["gate"])
  assert gate.shape == (B, 2) and out.shape == (B, C)
  assert np.all((gate >= 0) & (gate <= 1))
  np.testing.assert_allclose(gate.sum(axis=1), 1.0, atol=1e-6)
  expected = gate[:, :1] * aux["spatial_logits"] + gate[:, 1:] * aux["temporal_logits"]
  np.testing.assert_allclose(out, expected, atol=1e-6)
  if mode == "dynamic":
    assert "gate" in v["params"] and np.ptp(gate[:, 0]) > 0  # per-sample weights
  if mode == "learned":
    assert v["params"]["gate_logit"].shape == ()
    np.testing.assert_allclose(gate, 0.5, atol=1e-7)  # sigmoid(0) at init, the same for every sample
    v2 = jax.tree.map(lambda a: a, v)
    v2["params"]["gate_logit"] = jnp.asarray(2.0)
    gate2 = np.asarray(run(v2, FEATS, MASK, KEY)[1]["gate"])
    np.testing.assert_allclose(gate2[:, 0], 1 / (1 + np.exp(-2.0)), atol=1e-6)
  if mode == "fixed:0.3":
    np.testing.assert_array_equal(gate[:, 0], np.float32(0.3))
    np.testing.assert_array_equal(gate[:, 1], np.float32(1.0) - np.float32(0.3))
    assert "gate" not in v["params"] and "gate_logit" not in v["params"]


def test_fixed_weight_selects_the_spatial_stream():
  v, run = _compiled(fusion("fixed:1"))
  out, aux = run(v, FEATS, MASK, KEY)
  np.testing.assert_array_equal(out, aux["spatial_logits"])
  v0, run0 = _compiled(fusion("fixed:0"))
  out0, aux0 = run0(v0, FEATS, MASK, KEY)
  np.testing.assert_array_equal(out0, aux0["temporal_logits"])


def test_probability_mixing_returns_log_probabilities():
  v, run = _compiled(fusion("dynamic", combine="probs"))
  out, aux = run(v, FEATS, MASK, KEY)
  np.testing.assert_allclose(np.exp(out).sum(axis=1), 1.0, atol=1e-5)
  g = np.asarray(aux["gate"])
  mix = g[:, :1] * jax.nn.softmax(aux["spatial_logits"]) + g[:, 1:] * jax.nn.softmax(aux["temporal_logits"])
  np.testing.assert_allclose(np.exp(out), mix, atol=1e-6)


def test_dynamic_gate_is_trained():
  model = dynamic()
  v, _ = _compiled(model)
  y = jnp.array([0, 1, 2])

  def loss(params):
    out, _ = model.apply({"params": params}, FEATS, train=False, mask=MASK)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out), y[:, None], axis=1))

  grads = jax.jit(jax.grad(loss))(v["params"])
  assert float(jnp.abs(grads["gate"]["kernel"]).sum()) > 0


@pytest.mark.parametrize("mode", ["fixed:1.5", "fixed:-0.1", "fixed:abc", "gated", "fixed"])
def test_bad_modes_are_user_errors(mode):
  with pytest.raises(UserError, match="model.mode"):
    parse_mode(mode)
  with pytest.raises(UserError):
    fusion(mode)


def test_bad_fusion_settings_are_user_errors():
  with pytest.raises(UserError, match="temporal"):
    get_model("spatiotemporal", num_classes=C, temporal="gru")
  with pytest.raises(UserError, match="widht"):
    get_model("spatiotemporal", num_classes=C, temporal="cnn_lstm", temporal_kwargs={"widht": 3})
  with pytest.raises(UserError, match="combine"):
    get_model("spatiotemporal", num_classes=1, combine="probs").init(KEY, FEATS)


# ------------------------------------------------------------------------------------------------------ masks

@pytest.mark.parametrize("kind", ["mhsa", "tcn", "cnn_lstm"])
def test_padded_frames_do_not_change_the_temporal_output(kind):
  """Garbage (even NaN) in padded frames changes nothing, and a padded clip == the same clip unpadded."""
  model = get_model(kind, num_classes=C, **TEMPORAL_KW[kind])
  v, run = _compiled(model)
  out, aux = run(v, FEATS, MASK, KEY)
  garbage = jnp.where(MASK[..., None], FEATS, jnp.nan)
  out_g, aux_g = run(v, garbage, MASK, KEY)
  np.testing.assert_allclose(out_g, out, atol=1e-5)
  np.testing.assert_allclose(aux_g["features"], aux["features"], atol=1e-5)
  # Sample 1 has 2 valid frames: run it alone, unpadded, with the same weights.
  short, _ = model.apply(v, FEATS[1:2, :2], train=False)
  np.testing.assert_allclose(short[0], out[1], atol=1e-5)
  # ... while changing a valid frame does change the result.
  out_v, _ = run(v, FEATS.at[0, 1].add(3.0), MASK, KEY)
  assert not np.allclose(out_v[0], out[0], atol=1e-4)
  # An all-padding row (eval batches are padded with such rows) stays finite.
  out_empty, _ = run(v, garbage, MASK.at[0].set(False), KEY)
  assert np.all(np.isfinite(out_empty))


def test_fusion_ignores_padded_frames():
  v, run = _compiled(dynamic())
  out, aux = run(v, FEATS, MASK, KEY)
  out_g, aux_g = run(v, jnp.where(MASK[..., None], FEATS, 1e4), MASK, KEY)
  np.testing.assert_allclose(out_g, out, atol=1e-4)
  np.testing.assert_allclose(aux_g["gate"], aux["gate"], atol=1e-6)
  # No mask = every frame counts, so the padded values now matter.
  out_nomask, _ = run(v, FEATS, None, KEY)
  assert not np.allclose(out_nomask[0], out[0], atol=1e-4)
  np.testing.assert_allclose(out_nomask[2], out[2], atol=1e-5)  # sample 2 has no padding


def test_bad_mask_shape_is_a_user_error():
  with pytest.raises(UserError, match="mask"):
    get_model("tcn", num_classes=C, width=8).init(KEY, FEATS, mask=jnp.ones((B, T + 1), bool))


# ---------------------------------------------------------------------------------------------------- dropout

def test_dropout_only_in_training():
  v, run = _compiled(dynamic())
  k1, k2 = jax.random.split(jax.random.PRNGKey(7))
  e1, e2 = run(v, FEATS, MASK, k1)[0], run(v, FEATS, MASK, k2)[0]
  np.testing.assert_array_equal(e1, e2)
  t1, t2 = run(v, FEATS, MASK, k1, train=True)[0], run(v, FEATS, MASK, k2, train=True)[0]
  assert not np.allclose(t1, t2)
  np.testing.assert_array_equal(t1, run(v, FEATS, MASK, k1, train=True)[0])  # same key, same draw
