"""EchoSDNet: Keras-exact summary counts, frozen BatchNorm + gradients before conv5, freeze() optimizer,
trainable masks, input preprocessing. Full-size counts by jax.eval_shape; real passes at width 8, 32 px."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from echojax.errors import UserError
from echojax.models import get_model, summary
from echojax.models.echosdnet import (CAFFE_MEAN_BGR, TORCH_MEAN, TORCH_STD, TRAINABLE_REGEX, EchoSDNet,
                                      preprocess_input, resolve_preprocess, trainable_regex)


def abstract_vars(model, shape=(1, 224, 224, 3)):
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(shape)))


def test_keras_summary_counts_exact():
  m = get_model("echosdnet")
  v = abstract_vars(m)
  mask = summary.trainable_mask(v["params"], TRAINABLE_REGEX)
  text = summary.param_summary(v, mask, name="echosdnet", max_depth=2)
  lines = text.splitlines()
  assert "Total params: 23,858,370" in lines
  assert "Trainable params: 15,246,658" in lines
  assert "Non-trainable params: 8,611,712" in lines
  assert summary.param_counts(v, mask) == {"total": 23_858_370, "trainable": 15_246_658,
                                           "non_trainable": 8_611_712}
  # head 270,658; conv5 (stage4) 14,976,000 trainable (its BN gamma/beta included, moving stats not)
  head = {k: v["params"][k] for k in v["params"] if k.startswith("head_")}
  assert summary.count_params(head) == 270_658
  stage4 = {k: p for k, p in v["params"]["backbone"].items() if k.startswith("stage4_")}
  assert summary.count_params(stage4) == 14_976_000
  assert any(line.startswith("backbone/stage4_block0") for line in lines)
  # the whole-model (no mask) summary: everything in params trains
  assert "Trainable params: 23,805,250" in summary.param_summary(v).splitlines()


def test_torchvision_layout_counts_and_output_shape():
  m = EchoSDNet(layout="torchvision")
  v = abstract_vars(m)
  mask = summary.trainable_mask(v["params"], TRAINABLE_REGEX)
  # torchvision resnet50 without fc (23,508,032) + BN running stats (53,120) + head (270,658)
  assert summary.param_counts(v, mask)["total"] == 23_508_032 + 53_120 + 270_658
  assert "bias" not in v["params"]["backbone"]["stem_conv"]
  out, aux = jax.eval_shape(lambda v: m.apply(v, jnp.zeros((3, 224, 224, 3))), v)
  assert out.shape == (3, 2) and out.dtype == jnp.float32 and aux["features"].shape == (3, 2048)


def test_preprocessing_modes():
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(1, 2, 2, 3)), jnp.float32)
  caffe = preprocess_input(x, "caffe")
  np.testing.assert_allclose(caffe[..., 0], x[..., 2] * 255 - CAFFE_MEAN_BGR[0], rtol=1e-6, atol=1e-4)
  np.testing.assert_allclose(caffe[..., 2], x[..., 0] * 255 - CAFFE_MEAN_BGR[2], rtol=1e-6, atol=1e-4)
  torch_style = preprocess_input(x, "torch")
  np.testing.assert_allclose(torch_style[..., 1], (x[..., 1] - TORCH_MEAN[1]) / TORCH_STD[1], rtol=1e-6)
  np.testing.assert_array_equal(preprocess_input(x, "none"), x)
  assert resolve_preprocess(None, "keras") == "caffe" and resolve_preprocess(None, "torchvision") == "torch"
  with pytest.raises(UserError, match="model.preprocess"):
    resolve_preprocess("imagenet", "keras")
  with pytest.raises(UserError, match="RGB"):
    abstract_vars(EchoSDNet(), (1, 224, 224, 1))


def test_trainable_mask_regex_and_errors():
  v = abstract_vars(EchoSDNet(width=8), (1, 32, 32, 3))
  mask = summary.trainable_mask(v["params"], TRAINABLE_REGEX)
  assert mask["backbone"]["stage4_block2"]["bn3"]["scale"] is True
  assert mask["backbone"]["stage3_block5"]["conv3"]["kernel"] is False
  assert mask["backbone"]["stem_conv"]["kernel"] is False and mask["head_out"]["bias"] is True
  assert all(jax.tree.leaves(summary.trainable_mask(v["params"], None)))
  assert trainable_regex(-1) == ".*" and trainable_regex(4) == "^head_"
  assert summary.trainable_mask(v["params"], trainable_regex(2))["backbone"]["stage3_block0"]["conv1"]["kernel"]
  with pytest.raises(UserError, match="matches no parameter"):
    summary.trainable_mask(v["params"], "^decoder/")
  with pytest.raises(UserError, match="not a valid regular expression"):
    summary.trainable_mask(v["params"], "stage4_(")


@pytest.fixture(scope="module")
def tiny():
  m = EchoSDNet(width=8)
  x = jnp.asarray(np.random.default_rng(1).uniform(size=(4, 32, 32, 3)), jnp.float32)
  y = jnp.asarray([0, 1, 1, 0])
  v = summary.host_init(m, x, seed=2)

  def loss_fn(params, batch_stats, x, key):
    logits, new = m.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                          rngs={"dropout": key}, mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits[0], y).mean(), (new["batch_stats"], logits[0])

  grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  return m, x, v, grad_fn


def test_frozen_bn_and_gradients_before_conv5(tiny):
  m, x, v, grad_fn = tiny
  (loss, (stats, logits)), grads = grad_fn(v["params"], v["batch_stats"], x, jax.random.PRNGKey(0))
  assert logits.shape == (4, 2) and np.isfinite(float(loss))
  old = v["batch_stats"]["backbone"]
  for name in ["stem_bn", "stage1_block0", "stage2_block3", "stage3_block5"]:
    jax.tree.map(np.testing.assert_array_equal, stats["backbone"][name], old[name])
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads["backbone"][name])) == 0.0
  # conv5 BN trains on batch statistics and updates its moving averages
  assert not np.allclose(stats["backbone"]["stage4_block0"]["bn1"]["mean"], old["stage4_block0"]["bn1"]["mean"])
  assert float(jnp.abs(grads["backbone"]["stage4_block0"]["conv1"]["kernel"]).max()) > 0
  assert float(jnp.abs(grads["head_out"]["kernel"]).max()) > 0


def test_dropout_in_train_only(tiny):
  m, x, v, grad_fn = tiny
  (_, (_, a)), _ = grad_fn(v["params"], v["batch_stats"], x, jax.random.PRNGKey(0))
  (_, (_, b)), _ = grad_fn(v["params"], v["batch_stats"], x, jax.random.PRNGKey(1))
  assert not np.allclose(a, b)
  ev = jax.jit(lambda v, x: m.apply(v, x, train=False)[0])
  np.testing.assert_array_equal(ev(v, x), ev(v, x))


def test_freeze_optimizer_leaves_frozen_params_untouched(tiny):
  m, x, v, grad_fn = tiny
  mask = summary.trainable_mask(v["params"], TRAINABLE_REGEX)
  # all-ones grads + weight decay: optax.masked would still move frozen leaves; freeze() must not
  grads = jax.tree.map(jnp.ones_like, v["params"])
  tx = summary.freeze(optax.adamw(1e-2, weight_decay=0.1), mask)

  @jax.jit
  def step(params):
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    return jax.tree.map(lambda a, b: jnp.any(a != b), new, params)

  moved = jax.tree.map(bool, step(v["params"]))
  assert jax.tree.leaves(moved) == jax.tree.leaves(mask)
