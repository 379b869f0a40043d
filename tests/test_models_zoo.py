"""Model zoo: EfficientNet, image ViT, video ViT, temporal video models, conv3d.

Parameter counts and output shapes use ``jax.eval_shape`` (tracing only, no compile), so full-size models cost
nothing; numeric checks (dropout only in training, padded frames ignored) run tiny models under ``jax.jit``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echojax.errors import UserError
from echojax.models import get_model, list_models

KEY = jax.random.PRNGKey(0)
RNGS = {"params": KEY, "dropout": KEY}
B, T, S = 2, 4, 32
TINY_EFF = dict(width_mult=0.25, depth_mult=0.25)
TINY_BACKBONE = dict(backbone="vit", backbone_kwargs={"variant": "mu/8"})
MASK = jnp.array([[True, True, False, False], [True, True, True, True]])


def n_params(tree) -> int:
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def abstract_init(model, x, **kw):
  """(output, aux), variables as ShapeDtypeStructs, via eval_shape: no compile, no memory."""
  return jax.eval_shape(lambda: model.init_with_output(RNGS, x, train=False, **kw))


def quick_variables(model, x, seed: int = 0, **kw):
  """Concrete variables without running init (init of conv nets compiles slowly on CPU): shapes from
  eval_shape, params ~ N(0, 0.1^2) (LayerNorm/BN scales 1), BN running mean 0 / var 1."""
  _, shapes = abstract_init(model, x, **kw)
  rng = np.random.default_rng(seed)

  def fill(path, s):
    last = getattr(path[-1], "key", "")
    if last in ("scale", "var"):
      return jnp.ones(s.shape, s.dtype)
    if last == "mean":
      return jnp.zeros(s.shape, s.dtype)
    return jnp.asarray(rng.normal(0.0, 0.1, s.shape), s.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


# ----------------------------------------------------------------------------------------------- param counts

@pytest.mark.parametrize("variant,expected", [("b0", 5_288_548), ("b2", 9_109_994), ("b7", 66_347_960)])
def test_efficientnet_param_count_matches_torchvision(variant, expected):
  model = get_model(f"efficientnet_{variant}", num_classes=1000)
  _, v = abstract_init(model, jnp.zeros((1, 64, 64, 3)))
  assert n_params(v["params"]) == expected
  assert "batch_stats" in v  # running stats are state, not parameters


def test_vit_b16_param_count_matches_torchvision():
  model = get_model("vit", variant="B/16", num_classes=1000)
  (out, aux), v = abstract_init(model, jnp.zeros((1, 224, 224, 3)))
  assert n_params(v["params"]) == 86_567_656
  assert out.shape == (1, 1000) and aux["features"].shape == (1, 768)


def test_video_vit_s16x2_sizes():
  """ViT-S widths/heads; factorised adds a 4-block temporal encoder on top of joint's single encoder."""
  x = jnp.zeros((1, 8, 64, 64, 3))
  counts = {}
  for mode in ("joint", "factorised"):
    (out, aux), v = abstract_init(get_model("video_vit", variant="S/16x2", attention=mode, num_classes=10), x)
    assert out.shape == (1, 10) and aux["features"].shape == (1, 384)
    assert v["params"]["tubelet_embedding"]["kernel"].shape == (2, 16, 16, 3, 384)
    counts[mode] = n_params(v["params"])
  block = 4 * (384 * 384 + 384) + 2 * 2 * 384 + 384 * 1536 + 1536 + 1536 * 384 + 384
  assert counts["factorised"] - counts["joint"] > 4 * block * 0.99


# ------------------------------------------------------------------------------------------------ shapes

SHAPE_CASES = [
  ("efficientnet_b2", TINY_EFF, "image", 320),
  ("efficientnet", dict(variant="b0", **TINY_EFF), "image", 320),
  ("vit", dict(variant="mu/8"), "image", 32),
  ("vit", dict(variant="mu/8", pool="gap"), "image", 32),
  ("video_vit", dict(variant="mu/8x2", attention="joint"), "video", 32),
  ("video_vit", dict(variant="mu/8x2", attention="factorised"), "video", 32),
  ("video_vit", dict(variant="mu/8x2", attention="factorised", pool="gap"), "video", 32),
  ("cnn_lstm", dict(hidden_size=8, **TINY_BACKBONE), "video", 8),
  ("cnn_lstm", dict(hidden_size=8, num_layers=2, backbone="efficientnet_b2", backbone_kwargs=TINY_EFF), "video", 8),
  ("tcn", dict(width=8, **TINY_BACKBONE), "video", 8),
  ("mhsa", dict(width=8, depth=1, num_heads=2, mlp_dim=16, max_len=8, **TINY_BACKBONE), "video", 8),
  ("mhsa", dict(width=8, depth=1, num_heads=2, mlp_dim=16, pool="gap", **TINY_BACKBONE), "video", 8),
  ("conv3d", dict(widths=(4, 8, 8), temporal_strides=(1, 2, 2)), "video", 8),
  ("spatiotemporal", dict(temporal="tcn", temporal_kwargs={"width": 8}, **TINY_BACKBONE), "video", 32 + 8),
]


@pytest.mark.parametrize("name,kw,kind,feat_dim", SHAPE_CASES, ids=lambda c: c if isinstance(c, str) else None)
def test_output_shapes(name, kw, kind, feat_dim):
  x = jnp.zeros((B, S, S, 3)) if kind == "image" else jnp.zeros((B, T, S, S, 3))
  call_kw = {} if kind == "image" else {"mask": MASK}
  (out, aux), v = abstract_init(get_model(name, num_classes=3, **kw), x, **call_kw)
  assert out.shape == (B, 3) and out.dtype == jnp.float32
  assert aux["features"].shape == (B, feat_dim)
  if name != "spatiotemporal":  # num_classes=0 -> pooled features are the output
    (feats, _), _ = abstract_init(get_model(name, num_classes=0, **kw), x, **call_kw)
    assert feats.shape == (B, feat_dim)


def test_all_families_registered():
  names = set(list_models())
  expected = {f"efficientnet_b{i}" for i in range(8)} | {"efficientnet", "vit", "video_vit", "cnn_lstm", "tcn",
                                                         "mhsa", "conv3d", "spatiotemporal"}
  assert expected <= names


def test_default_backbone_is_efficientnet_b2():
  (out, aux), v = abstract_init(get_model("cnn_lstm", num_classes=3, hidden_size=8), jnp.zeros((1, 2, 32, 32, 3)))
  assert aux["frame_features"].shape == (1, 2, 1408)  # B2's 4 x 352 head width
  assert n_params(v["params"]["backbone"]) == 9_109_994 - (1408 * 1000 + 1000)  # B2 without its classifier


def test_resnet_backbone_through_registry():
  if "resnet18" not in list_models():
    pytest.skip("echojax/models/resnet.py has not registered resnet18 yet")
  (out, aux), _ = abstract_init(get_model("tcn", num_classes=3, width=8, backbone="resnet18"),
                                jnp.zeros((1, 2, 32, 32, 3)))
  assert out.shape == (1, 3) and aux["frame_features"].shape == (1, 2, 512)


# ----------------------------------------------------------------------------------------------- numerics

def _runner(model, has_bn: bool, **kw):
  """One jitted apply per (model, train) pair: returns (output, updated batch_stats or None)."""

  @functools.partial(jax.jit, static_argnames="train")
  def run(v, x, key, train):
    if train and has_bn:
      (out, _), upd = model.apply(v, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"], **kw)
      return out, upd["batch_stats"]
    return model.apply(v, x, train=train, rngs={"dropout": key}, **kw)[0], None

  return run


def _train_eval_outputs(model, x, variables, run=None, **kw):
  """Eval outputs under two dropout keys, train outputs under two keys (one compile per mode), and the
  batch_stats after the first training call (None without BatchNorm)."""
  run = run or _runner(model, "batch_stats" in variables, **kw)
  k1, k2 = jax.random.split(jax.random.PRNGKey(1))
  ev = [run(variables, x, k, train=False)[0] for k in (k1, k2)]
  (tr0, stats), (tr1, _) = [run(variables, x, k, train=True) for k in (k1, k2)]
  return ev, [tr0, tr1], stats


def test_efficientnet_dropout_and_stochastic_depth_only_in_training():
  model = get_model("efficientnet_b0", num_classes=3, dropout=0.5, stochastic_depth_prob=0.5, **TINY_EFF)
  x = jax.random.normal(KEY, (B, S, S, 3))
  v = quick_variables(model, x)
  ev, tr, stats = _train_eval_outputs(model, x, v)
  assert np.all(np.isfinite(ev[0]))
  np.testing.assert_array_equal(ev[0], ev[1])
  assert not np.allclose(tr[0], tr[1])
  # Training updates the BatchNorm running statistics (torch momentum 0.1 == flax momentum 0.9).
  old = v["batch_stats"]["stem"]["bn"]["mean"]
  new = stats["stem"]["bn"]["mean"]
  assert not np.allclose(old, new)
  assert model.hparams()["bn_momentum"] == pytest.approx(0.9) and model.hparams()["bn_eps"] == 1e-5


def test_vit_dropout_only_in_training():
  model = get_model("vit", variant="mu/8", num_classes=3, dropout=0.3)
  x = jax.random.normal(KEY, (B, S, S, 3))
  ev, tr, _ = _train_eval_outputs(model, x, quick_variables(model, x))
  np.testing.assert_array_equal(ev[0], ev[1])
  assert not np.allclose(tr[0], tr[1])


@pytest.mark.parametrize("attention", ["joint", "factorised"])
def test_video_vit_ignores_padded_frames_and_dropout_only_in_training(attention):
  model = get_model("video_vit", variant="mu/8x2", attention=attention, num_classes=3, dropout=0.3)
  x = jax.random.normal(KEY, (B, T, S, S, 3))
  v = quick_variables(model, x, mask=MASK)
  run = _runner(model, False, mask=MASK)
  base = run(v, x, KEY, train=False)[0]
  changed = x.at[0, 2:].set(100.0)  # sample 0's last tubelet is all padding
  np.testing.assert_allclose(run(v, changed, KEY, train=False)[0], base, atol=1e-5)
  valid_changed = run(v, x.at[0, :2].set(100.0), KEY, train=False)[0]
  assert not np.allclose(valid_changed, base, atol=1e-3)  # a valid tubelet does matter
  ev, tr, _ = _train_eval_outputs(model, x, v, run=run)
  np.testing.assert_array_equal(ev[0], ev[1])
  assert not np.allclose(tr[0], tr[1])


def test_conv3d_ignores_padded_frame_content():
  model = get_model("conv3d", num_classes=3, widths=(4, 8), temporal_strides=(2, 2))
  x = jax.random.normal(KEY, (B, T, S, S, 3))
  mask = jnp.array([[True, True, True, False], [True, True, True, True]])
  v = quick_variables(model, x, mask=mask)
  run = jax.jit(lambda v, x: model.apply(v, x, train=False, mask=mask)[0])
  base = run(v, x)
  np.testing.assert_allclose(run(v, x.at[0, 3].set(-50.0)), base, atol=1e-5)
  assert not np.allclose(run(v, x.at[1, 3].set(-50.0)), base, atol=1e-3)


def test_video_wrapper_runs_backbone_per_frame():
  """cnn_lstm on a video == cnn_lstm on the backbone's per-frame features with the same weights."""
  model = get_model("cnn_lstm", num_classes=3, hidden_size=8, **TINY_BACKBONE)
  x = jax.random.normal(KEY, (B, T, S, S, 3))
  v = quick_variables(model, x)
  out, aux = jax.jit(lambda v, x: model.apply(v, x, train=False))(v, x)
  frame0, _ = get_model("vit", variant="mu/8", num_classes=0).apply(
    {"params": v["params"]["backbone"]["net"]}, x[:, 1], train=False)
  np.testing.assert_allclose(aux["frame_features"][:, 1], frame0, atol=1e-5)
  head_only = {"params": {k: p for k, p in v["params"].items() if k != "backbone"}}
  out2, _ = model.apply(head_only, aux["frame_features"], train=False)
  np.testing.assert_allclose(out2, out, atol=1e-5)


# --------------------------------------------------------------------------------------------- user errors

@pytest.mark.parametrize("name,kw,shape", [
  ("vit", dict(variant="XXL/16"), (1, 32, 32, 3)),
  ("vit", dict(variant="mu/7"), (1, 32, 32, 3)),
  ("efficientnet", dict(variant="b9"), (1, 32, 32, 3)),
  ("efficientnet_b0", {}, (1, 2, 32, 32, 3)),
  ("video_vit", dict(variant="mu/8x3"), (1, 4, 32, 32, 3)),
  ("video_vit", dict(variant="mu/8x2", attention="divided"), (1, 4, 32, 32, 3)),
  ("mhsa", dict(max_len=2, width=8, **TINY_BACKBONE), (1, 4, 32, 32, 3)),
])
def test_bad_settings_raise_user_error(name, kw, shape):
  with pytest.raises(UserError):
    abstract_init(get_model(name, num_classes=3, **kw), jnp.zeros(shape))


def test_unknown_temporal_option_is_a_user_error():
  with pytest.raises(UserError, match="hidden_size"):
    get_model("tcn", hidden_size=8)


@pytest.mark.parametrize("name,kw,shape", [
  ("efficientnet_b0", TINY_EFF, (B, S, S, 3)),
  ("vit", dict(variant="mu/8"), (B, S, S, 3)),
  ("video_vit", dict(variant="mu/8x2"), (B, T, S, S, 3)),
  ("spatiotemporal", dict(temporal="cnn_lstm", temporal_kwargs={"hidden_size": 8}, **TINY_BACKBONE), (B, T, S, S, 3)),
])
def test_bfloat16_compute_keeps_float32_params_and_outputs(name, kw, shape):
  (out, aux), v = abstract_init(get_model(name, num_classes=3, dtype=jnp.bfloat16, **kw), jnp.zeros(shape))
  assert out.dtype == jnp.float32 and aux["features"].dtype == jnp.float32
  assert {a.dtype for a in jax.tree.leaves(v["params"])} == {jnp.dtype(jnp.float32)}
