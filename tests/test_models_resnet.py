"""2D ResNets: torchvision-exact parameter counts, Keras layout, BatchNorm train/eval semantics, frozen stages,
per-frame wrapper. Parameter counts use jax.eval_shape (no compile); real forward passes run at width 8."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echojax.errors import UserError
from echojax.models import get_model, list_models
from echojax.models.resnet import FrameResNet, ResNet, feature_dim, layout_options
from echojax.models.summary import count_params, host_init


def abstract_vars(model, shape, **kw):
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(shape), **kw))


# torchvision.models.resnetXX(num_classes=1000): sum(p.numel() for p in m.parameters())
TORCHVISION_COUNTS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
                      "resnet101": 44_549_160, "resnet152": 60_192_808}


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTS))
def test_param_counts_equal_torchvision(name):
  v = abstract_vars(get_model(name), (1, 224, 224, 3))
  assert count_params(v["params"]) == TORCHVISION_COUNTS[name]
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(v["params"]))


def test_registry_names_and_depth_mismatch():
  for name in ["resnet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "frame_resnet"]:
    assert name in list_models()
  assert get_model("resnet", depth=34).depth == 34
  with pytest.raises(UserError, match="model.depth"):
    get_model("resnet18", depth=50)
  with pytest.raises(UserError, match="model.depth"):
    abstract_vars(ResNet(depth=20), (1, 32, 32, 3))
  with pytest.raises(UserError, match="layout"):
    abstract_vars(ResNet(depth=18, layout="caffe"), (1, 32, 32, 3))
  with pytest.raises(UserError, match="FrameResNet"):
    abstract_vars(ResNet(depth=18), (1, 2, 32, 32, 3))


def test_torch_name_scheme():
  v = abstract_vars(ResNet(depth=50, num_classes=10), (1, 64, 64, 3))
  p, s = v["params"], v["batch_stats"]
  assert p["stem_conv"]["kernel"].shape == (7, 7, 3, 64) and "bias" not in p["stem_conv"]
  assert set(p["stage1_block0"]) == {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "downsample_conv",
                                     "downsample_bn"}
  assert "downsample_conv" not in p["stage1_block1"]
  assert p["stage4_block2"]["conv3"]["kernel"].shape == (1, 1, 512, 2048)
  assert set(s["stage4_block2"]["bn3"]) == {"mean", "var"}
  assert p["head"]["kernel"].shape == (2048, 10)
  # 0-based block index like torchvision's layer{i}.{k}
  assert {k for k in p if k.startswith("stage3_")} == {f"stage3_block{k}" for k in range(6)}


def test_headless_returns_pooled_features_and_feature_dim():
  for depth, width in [(18, 64), (50, 16)]:
    m = ResNet(depth=depth, num_classes=0, width=width)
    out, v = jax.eval_shape(lambda: m.init_with_output(jax.random.PRNGKey(0), jnp.zeros((2, 64, 64, 3))))
    assert out[0].shape == (2, feature_dim(depth, width)) == out[1]["features"].shape
    assert "head" not in v["params"]
  assert feature_dim(50) == 2048 and feature_dim(152, 8) == 256 and feature_dim(34) == 512


def test_keras_layout_bias_counts_and_stride_position():
  m = ResNet(depth=50, num_classes=0, layout="keras")
  v = abstract_vars(m, (1, 224, 224, 3))
  # keras.applications.ResNet50(include_top=False).count_params() == 23,587,712
  assert count_params(v["params"]) + count_params(v["batch_stats"]) == 23_587_712
  assert v["params"]["stem_conv"]["bias"].shape == (64,)
  assert layout_options("keras") == dict(use_bias=True, epsilon=1.001e-5, momentum=0.99, stride_on="conv1")
  assert layout_options("torchvision") == dict(use_bias=False, epsilon=1e-5, momentum=0.9, stride_on="conv2")

  def conv_out_shapes(layout):
    model = ResNet(depth=50, num_classes=0, width=8, layout=layout)
    x = jnp.zeros((1, 64, 64, 3))
    var = abstract_vars(model, x.shape)
    _, inter = jax.eval_shape(lambda v: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"]),
                              var)
    blk = inter["intermediates"]["stage2_block0"]
    return [blk[f"conv{j}"]["__call__"][0].shape[1] for j in (1, 2, 3)]

  # stage2 input is 16x16: keras halves on the first 1x1 conv, torchvision (v1.5) on the 3x3 conv.
  assert conv_out_shapes("keras") == [8, 8, 8]
  assert conv_out_shapes("torchvision") == [16, 8, 8]


def test_bf16_compute_keeps_float32_params_and_outputs():
  m = ResNet(depth=18, width=8, num_classes=3, dtype=jnp.bfloat16)
  x = jnp.zeros((2, 32, 32, 3))
  v = abstract_vars(m, x.shape)
  assert {a.dtype for a in jax.tree.leaves(v)} == {jnp.dtype(jnp.float32)}
  (y, aux), inter = jax.eval_shape(
    lambda v: m.apply(v, x, capture_intermediates=True, mutable=["intermediates"]), v)
  assert y.dtype == jnp.float32 and aux["features"].dtype == jnp.float32
  assert inter["intermediates"]["stage1_block0"]["conv1"]["__call__"][0].dtype == jnp.bfloat16


@pytest.mark.parametrize("layout", ["torchvision", "keras"])
def test_output_shapes_every_depth_tiny(layout):
  # shapes by tracing (no compile); real forward passes: resnet18 below, keras resnet50 in test_echosdnet_model
  x = jnp.zeros((2, 32, 32, 3))
  for depth in (18, 50):  # other depths differ only in block counts (see the parameter-count test)
    m = ResNet(depth=depth, width=8, num_classes=5, layout=layout)
    (y, aux), v = jax.eval_shape(lambda: m.init_with_output(jax.random.PRNGKey(0), x))
    assert y.shape == (2, 5) and aux["features"].shape == (2, feature_dim(depth, 8))
    assert ("bias" in v["params"]["stage1_block0"]["conv1"]) == (layout == "keras")


def test_init_runs_and_matches_abstract_shapes():
  m = ResNet(depth=18, width=8, num_classes=4)
  x = jnp.zeros((1, 32, 32, 3))
  v = jax.jit(m.init)(jax.random.key(0, impl="unsafe_rbg"), x)  # rbg: far cheaper RNG compile than threefry
  a = abstract_vars(m, x.shape)
  assert jax.tree.map(lambda t: t.shape, v) == jax.tree.map(lambda t: t.shape, a)
  assert float(jnp.std(v["params"]["stem_conv"]["kernel"])) == pytest.approx(np.sqrt(2 / (7 * 7 * 8)), rel=0.2)
  np.testing.assert_array_equal(v["batch_stats"]["stem_bn"]["var"], 1.0)


@pytest.fixture(scope="module")
def bn_setup():
  m = ResNet(depth=18, width=8, num_classes=3)
  x = jax.random.normal(jax.random.PRNGKey(2), (4, 32, 32, 3)) * 2.0 + 0.5
  v = host_init(m, x, seed=3)
  # also captures the stem conv's output, to check the running-mean update
  train = jax.jit(lambda v, x: m.apply(v, x, train=True, mutable=["batch_stats", "intermediates"],
                                       capture_intermediates=lambda mdl, _: mdl.name == "stem_conv"))
  evaluate = jax.jit(lambda v, x: m.apply(v, x, train=False)[0])
  return m, x, v, train, evaluate


def test_batchnorm_train_updates_stats_with_torch_momentum(bn_setup):
  m, x, v, train, _ = bn_setup
  (_, _), new = train(v, x)
  old_s, new_s = v["batch_stats"], new["batch_stats"]
  for path in [("stem_bn",), ("stage4_block1", "bn2")]:
    a, b = old_s, new_s
    for k in path:
      a, b = a[k], b[k]
    assert not np.allclose(a["mean"], b["mean"]) and not np.allclose(a["var"], b["var"])
  # running = 0.9 * running + 0.1 * batch mean (flax momentum 0.9 == torch momentum 0.1)
  conv = new["intermediates"]["stem_conv"]["__call__"][0]
  want = 0.9 * old_s["stem_bn"]["mean"] + 0.1 * jnp.mean(conv, axis=(0, 1, 2))
  np.testing.assert_allclose(new_s["stem_bn"]["mean"], want, rtol=1e-4, atol=1e-5)


def test_batchnorm_eval_uses_running_stats_and_is_per_item(bn_setup):
  m, x, v, train, evaluate = bn_setup
  other = jax.random.normal(jax.random.PRNGKey(9), x.shape)
  mixed = x.at[1:].set(other[1:])
  # eval: item 0's output does not depend on the other items of the batch
  np.testing.assert_allclose(evaluate(v, x)[0], evaluate(v, mixed)[0], rtol=1e-5, atol=1e-5)
  # train: it does (batch statistics)
  (y_a, _), _ = train(v, x)
  (y_b, _), _ = train(v, mixed)
  assert not np.allclose(y_a[0], y_b[0], atol=1e-4)
  # eval uses the (updated) running statistics
  (_, _), new = train(v, x)
  updated = {"params": v["params"], "batch_stats": new["batch_stats"]}
  assert not np.allclose(evaluate(v, x), evaluate(updated, x), atol=1e-4)


def test_frozen_stages_keep_stats_and_stop_gradients():
  m = ResNet(depth=18, width=8, num_classes=3, frozen_stages=2)
  x = jax.random.normal(jax.random.PRNGKey(4), (2, 32, 32, 3))
  v = host_init(m, x)

  def loss(params):
    (y, _), new = m.apply({"params": params, "batch_stats": v["batch_stats"]}, x, train=True,
                          mutable=["batch_stats"])
    return jnp.sum(y ** 2), new

  grads, new = jax.jit(jax.grad(loss, has_aux=True))(v["params"])
  for name in ["stem_bn", "stage1_block0", "stage2_block1"]:
    jax.tree.map(np.testing.assert_array_equal, new["batch_stats"][name], v["batch_stats"][name])
  for name in ["stem_conv", "stage1_block0", "stage2_block1"]:
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads[name]))
  assert not np.allclose(new["batch_stats"]["stage3_block0"]["bn1"]["mean"],
                         v["batch_stats"]["stage3_block0"]["bn1"]["mean"])
  assert float(jnp.abs(grads["stage3_block0"]["conv1"]["kernel"]).max()) > 0


def test_frame_resnet_matches_per_image_resnet():
  fm = FrameResNet(depth=18, width=8)
  video = jax.random.normal(jax.random.PRNGKey(5), (2, 3, 32, 32, 3))
  v = host_init(fm, video)
  feats, aux = jax.jit(lambda v, x: fm.apply(v, x))(v, video)
  assert feats.shape == (2, 3, 64) and aux["features"].shape == (2, 3, 64)
  # each frame's features depend on that frame only: shuffling frames across clips shuffles the features
  flat = video.reshape((6,) + video.shape[2:])
  perm = np.array([5, 2, 0, 4, 1, 3])
  shuffled, _ = jax.jit(lambda v, x: fm.apply(v, x))(v, flat[perm].reshape(video.shape))
  np.testing.assert_allclose(shuffled.reshape(6, -1), feats.reshape(6, -1)[perm], rtol=1e-4, atol=1e-5)
  # the backbone's weights are those of a plain headless 2D ResNet
  plain = abstract_vars(ResNet(depth=18, width=8, num_classes=0), (1, 32, 32, 3))
  assert jax.tree.map(lambda t: t.shape, plain) == jax.tree.map(lambda t: t.shape,
                                                                 {k: c["backbone"] for k, c in v.items()})
  with_head = FrameResNet(depth=18, width=8, num_classes=2)
  out = jax.eval_shape(lambda: with_head.init_with_output(jax.random.PRNGKey(0), video)[0])
  assert out[0].shape == (2, 3, 2) and out[1]["features"].shape == (2, 3, 64)


def test_frame_resnet_transfer_head_pooling_dropout_and_export(tmp_path):
  """head_units / dropout / cnn_dropout / pool="mean_std": the mean and std over VALID frames feed the fc layers;
  dropout acts in training only; the EF run's backbone weights fit unchanged; torch gives the same outputs."""
  from echojax.export import export_variables

  kw = {"depth": 18, "width": 8, "num_classes": 2, "head_units": [16], "dropout": 0.5, "cnn_dropout": 0.5,
        "pool": "mean_std"}
  m = get_model("frame_resnet", **kw)
  video = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 32, 32, 3))
  v = host_init(m, video)
  assert set(v["params"]) == {"backbone", "fc0", "head"} and v["params"]["fc0"]["kernel"].shape == (2 * 64, 16)
  plain = host_init(FrameResNet(depth=18, width=8, num_classes=2), video)
  assert jax.tree.map(jnp.shape, plain["params"]["backbone"]) == jax.tree.map(jnp.shape, v["params"]["backbone"])
  out, _ = m.apply(v, video)
  assert out.shape == (2, 2)
  np.testing.assert_array_equal(out, m.apply(v, video)[0])  # eval: deterministic
  train_out = m.apply(v, video, train=True, rngs={"dropout": jax.random.PRNGKey(0)}, mutable=["batch_stats"])[0][0]
  assert not np.allclose(train_out, out)
  # padded frames (mask False) do not change the pooled features: clip 0 with 2 junk frames = its 2 real frames
  mask = jnp.array([[True, True, False, False], [True] * 4])
  junk = video.at[0, 2:].set(100.0)
  masked, _ = m.apply(v, junk, mask=mask)
  short, _ = m.apply(v, video[:1, :2])
  np.testing.assert_allclose(masked[0], short[0], rtol=1e-4, atol=1e-5)
  with pytest.raises(UserError, match="model.kwargs.pool"):
    get_model("frame_resnet", **{**kw, "pool": "max"}).apply(v, video)
  # the torch mirror (eval) matches: export refuses otherwise
  path = export_variables(v, "lvad_head", "frame_resnet", kw, registry=tmp_path, input={"shape": [3, 4, 32, 32]})
  assert (path / "model.safetensors").is_file()
