"""The ECG-image ResNet (echojax.models.ecg_resnet): parameter counts of every switch (full size, by jax.eval_shape),
all-off == the plain ResNet, train vs eval (dropout, BatchNorm), gradients into every module, ImageNet init from a
torchvision file the test writes, torch parity of a basic-block / keras-layout / 4-level-pyramid variant, the config.
Real passes run at width 8 on 32-40 px."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from echoforge import torchvision_names
from echoforge.models import ResNet as TorchResNet
from echojax.config import load_config
from echojax.convert import flatten, random_variables
from echojax.errors import UserError
from echojax.export import to_module
from echojax.models import get_model
from echojax.models.ecg_resnet import EcgResNet, upsample_nearest
from echojax.models.resnet import ResNet
from echojax.models.summary import count_params
from echojax.pretrained import load_imagenet_resnet

SWITCHES = ("multiscale", "pyramid", "attention", "calibration", "fusion")
ALL_OFF = {s: False for s in SWITCHES}
TOL = 1e-4


def abstract(model, shape=(1, 224, 224, 3)):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))


def test_full_model_and_all_off_parameter_counts():
  full = abstract(get_model("ecg_resnet50"))["params"]
  assert count_params(full) == 29_089_964
  assert set(full) == {"backbone", "multiscale", "attention", "calibration", "pyramid", "head_dense1", "head_bn1",
                       "head_dense2", "head_bn2", "head_out"}
  assert full["head_dense1"]["kernel"].shape == (2048 + 3 * 256 + 256 + 512, 512)
  # everything off and no dense head: exactly torchvision's resnet50 with a 5-class fc (GAP + linear)
  plain = abstract(get_model("ecg_resnet50", **ALL_OFF, head_units=()))["params"]
  resnet = abstract(ResNet(depth=50, num_classes=5))["params"]
  assert count_params(plain) == count_params(resnet) == 23_518_277
  assert set(plain) == {"backbone", "head_out"}
  # ... and with the default head: the headless backbone + 2048-512-256-5 with BatchNorm
  headed = abstract(get_model("ecg_resnet50", **ALL_OFF))["params"]
  head = 2048 * 512 + 2 * 512 + 512 * 256 + 2 * 256 + 256 * 5 + 5
  assert count_params(headed) == 23_508_032 + head


def module_params(switch: str, w: int = 64, k: int = 4) -> int:
  """Parameters each switch adds on ResNet50 of base width ``w`` (stage channels 4w, 8w, 16w, 32w)."""
  c1, c2, c3, c4, d, b = 4 * w, 8 * w, 16 * w, 32 * w, 4 * w, w // 4
  return {"multiscale": c1 * w + 2 * w + sum(w * b * q * q + 2 * b for q in (3, 5, 9, 15)) + 4 * b * c1 + 2 * c1,
          "attention": 2 * c4 * (c4 // 16) + 2 * 49 + 1,
          "calibration": c4 * k + k + k * c4 + c4,
          "pyramid": sum(c * d + d for c in (c2, c3, c4)) + 3 * (9 * d * d + d),
          "fusion": 0}[switch]


@pytest.mark.parametrize("switch", SWITCHES)
def test_each_switch_adds_its_module_and_feature_width(switch):
  base = abstract(get_model("ecg_resnet50", **ALL_OFF))["params"]
  one = abstract(get_model("ecg_resnet50", **{**ALL_OFF, switch: True}))["params"]
  new = set(one) - set(base)
  assert new == (set() if switch == "fusion" else {switch}) and set(base) <= set(one)
  extra_in = {"pyramid": 3 * 256, "fusion": 256 + 512}.get(switch, 0)  # wider head input: pooled levels / stages
  assert one["head_dense1"]["kernel"].shape == (2048 + extra_in, 512)
  assert count_params(one) - count_params(base) == module_params(switch) + extra_in * 512
  if switch == "multiscale":  # 1x1 reduce to 64, four 16-channel branches, project back to stage 1's 256
    ms = one["multiscale"]
    assert ms["reduce"]["kernel"].shape == (1, 1, 256, 64) and ms["project"]["kernel"].shape == (1, 1, 64, 256)
    assert [ms[f"branch{q}"]["kernel"].shape for q in (3, 5, 9, 15)] == [(q, q, 64, 16) for q in (3, 5, 9, 15)]
  if switch == "calibration":  # K = 4 component detectors (P, QRS, T, ST) -> 2048 channel gates
    assert one["calibration"]["detectors"]["kernel"].shape == (1, 1, 2048, 4)
    assert one["calibration"]["gates"]["kernel"].shape == (4, 2048)


def test_shapes_depths_aux_and_bf16():
  x = jnp.zeros((2, 64, 64, 3))
  for depth, c4 in ((18, 64), (50, 256)):  # width 8: stage channels 8..64 (basic) / 32..256 (bottleneck)
    m = get_model("ecg_resnet", depth=depth, width=8, num_classes=3)
    (y, aux), _ = jax.eval_shape(lambda: m.init_with_output(jax.random.key(0), x))
    c1, c2 = c4 // 8, c4 // 4
    assert y.shape == (2, 3) and y.dtype == jnp.float32
    assert aux["features"].shape == (2, c4 + 3 * 32 + c1 + c2) and aux["components"].shape == (2, 4)
  headless = get_model("ecg_resnet50", width=8, num_classes=0, calibration=False)
  (feats, aux), v = jax.eval_shape(lambda: headless.init_with_output(jax.random.key(0), x))
  assert feats.shape == aux["features"].shape == (2, 256 + 96 + 32 + 64) and "components" not in aux
  assert not any(k.startswith("head") for k in v["params"])
  half = get_model("ecg_resnet50", width=8, num_classes=3, dtype=jnp.bfloat16)
  (y, aux), v = jax.eval_shape(lambda: half.init_with_output(jax.random.key(0), x))
  assert y.dtype == aux["features"].dtype == aux["components"].dtype == jnp.float32
  assert {a.dtype for a in jax.tree.leaves(v)} == {jnp.dtype(jnp.float32)}


def test_bad_arguments_are_user_errors():
  with pytest.raises(UserError, match="pyramid_stages"):
    abstract(get_model("ecg_resnet50", width=8, pyramid_stages=[3, 2, 4]), (1, 32, 32, 3))
  with pytest.raises(UserError, match="pyramid_stages"):
    abstract(get_model("ecg_resnet50", width=8, pyramid_stages=[2, 3]), (1, 32, 32, 3))
  with pytest.raises(UserError, match="images"):
    abstract(get_model("ecg_resnet50", width=8), (1, 2, 32, 32, 3))
  with pytest.raises(UserError, match="model.depth"):
    get_model("ecg_resnet50", depth=18)


def test_upsample_nearest_indices():
  x = jnp.arange(2 * 3, dtype=jnp.float32).reshape(1, 2, 3, 1)
  y = upsample_nearest(x, (3, 6))[0, ..., 0]
  np.testing.assert_array_equal(y, [[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], [3, 3, 4, 4, 5, 5]])


def test_all_off_without_head_units_is_the_plain_resnet():
  """The same weights give the same logits: ``backbone`` = the ResNet without ``head``, ``head_out`` = its head."""
  x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
  resnet = ResNet(depth=18, width=8, num_classes=3)
  rv = random_variables(abstract(resnet, x.shape), 1)
  ecg = get_model("ecg_resnet", depth=18, width=8, num_classes=3, **ALL_OFF, head_units=())
  params = {"backbone": {k: v for k, v in rv["params"].items() if k != "head"}, "head_out": rv["params"]["head"]}
  ev = {"params": params, "batch_stats": {"backbone": rv["batch_stats"]}}
  assert jax.tree.map(np.shape, ev) == jax.tree.map(np.shape, abstract(ecg, x.shape))
  want, _ = jax.jit(lambda v, x: resnet.apply(v, x, train=False))(rv, x)
  got, aux = jax.jit(lambda v, x: ecg.apply(v, x, train=False))(ev, x)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert aux["features"].shape == (2, 64)


@pytest.fixture(scope="module")
def small():
  """depth 18, every module on, a 16-unit head; random variables (non-trivial BN, non-zero multi-scale BN scale)."""
  m = get_model("ecg_resnet", depth=18, width=8, num_classes=3, head_units=(16,), dropout=0.5)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 32, 32, 3)), jnp.float32)
  v = random_variables(abstract(m, x.shape), 2)
  y = jnp.asarray([0, 1, 2, 1])

  def loss_fn(params, stats, x, key):
    (logits, aux), new = m.apply({"params": params, "batch_stats": stats}, x, train=True, rngs={"dropout": key},
                                 mutable=["batch_stats"])
    loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
    return loss, (new["batch_stats"], logits)

  return m, x, v, jax.jit(jax.value_and_grad(loss_fn, has_aux=True))


def test_train_mode_dropout_batch_stats_and_gradients(small):
  m, x, v, grad_fn = small
  (loss, (stats, a)), grads = grad_fn(v["params"], v["batch_stats"], x, jax.random.key(0))
  (_, (_, b)), _ = grad_fn(v["params"], v["batch_stats"], x, jax.random.key(1))
  assert np.isfinite(float(loss)) and not np.allclose(a, b)  # dropout draws differ
  old = v["batch_stats"]
  for path in (("backbone", "stem_bn"), ("multiscale", "branch15_bn"), ("multiscale", "project_bn"), ("head_bn1",)):
    o, n = old, stats
    for k in path:
      o, n = o[k], n[k]
    assert not np.allclose(o["mean"], n["mean"]), path  # running statistics move in training
  for name in ("backbone", "multiscale", "attention", "calibration", "pyramid", "head_dense1", "head_bn1", "head_out"):
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads[name])) > 0, name


def test_eval_is_deterministic_per_item_and_jit_equals_eager(small):
  m, x, v, _ = small
  ev = jax.jit(lambda v, x: m.apply(v, x, train=False))
  (a, aux), (b, _) = ev(v, x), ev(v, x)
  np.testing.assert_array_equal(a, b)  # no dropout, running statistics
  one, _ = ev(v, x[:1])
  np.testing.assert_allclose(one[0], a[0], rtol=1e-5, atol=1e-5)  # each item independent of the batch
  eager, eager_aux = m.apply(v, x, train=False)
  np.testing.assert_allclose(eager, a, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(eager_aux["components"], aux["components"], rtol=1e-5, atol=1e-6)
  assert aux["components"].shape == (4, 4) and 0 < float(aux["components"].min()) < float(aux["components"].max()) < 1


def test_parity_basic_blocks_keras_layout_four_level_pyramid():
  """Beyond the golden cases: basic blocks, the keras backbone, a pyramid over all four stages, 40 px (stage maps
  10, 5, 3, 2: every upsampling has an odd size), 3 components; torch == JAX in eval mode."""
  kw = {"depth": 18, "width": 8, "num_classes": 4, "layout": "keras", "pyramid_stages": [1, 2, 3, 4],
        "head_units": [16], "components": 3, "attention_reduction": 4}
  m = get_model("ecg_resnet", **kw)
  x = np.random.default_rng(3).random((2, 40, 40, 3), dtype=np.float32)
  v = random_variables(abstract(m, x.shape), 4)
  y_jax, _ = jax.jit(lambda v, x: m.apply(v, x, train=False))(v, x)
  module = to_module(v, "ecg_resnet", kw)
  with torch.no_grad():
    y_torch = module(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))).numpy()
  assert np.abs(y_torch).max() > 0.05
  assert float(np.max(np.abs(y_torch - np.asarray(y_jax)))) <= TOL * max(1.0, float(np.abs(y_torch).max()))


def test_imagenet_init_loads_the_backbone_and_leaves_the_ecg_modules(tmp_path):
  torch.manual_seed(0)
  tm = TorchResNet(depth=50, width=8, num_classes=10)
  with torch.no_grad():
    for mod in tm.modules():
      if isinstance(mod, torch.nn.BatchNorm2d):
        mod.running_mean.normal_(0, 0.1)
        mod.running_var.uniform_(0.5, 1.5)
        mod.weight.uniform_(0.5, 1.0)
        mod.bias.normal_(0, 0.1)
  tm.eval()
  sd = tm.state_dict()
  names = torchvision_names.to_torchvision({k: tuple(t.shape) for k, t in sd.items()})
  path = tmp_path / "resnet50.pth"
  torch.save({names[k]: t for k, t in sd.items()}, path)

  x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
  m = get_model("ecg_resnet50", width=8, num_classes=3)
  init = jax.device_get(jax.jit(lambda k: m.init(k, x, train=False))(jax.random.key(0, impl="unsafe_rbg")))
  variables, report = load_imagenet_resnet(path, init)
  assert len(report.loaded) == 265 and report.missing == [] and report.unmatched == []
  assert report.skipped_head == ["fc.bias", "fc.weight"]
  np.testing.assert_array_equal(variables["params"]["backbone"]["stem_conv"]["kernel"],
                                sd["stem_conv.weight"].numpy().transpose(2, 3, 1, 0))
  before, after = flatten(init), flatten(variables)
  assert set(before) == set(after)
  kept = [k for k in before if k[1] != "backbone"]
  assert {k[1] for k in kept} >= {"multiscale", "attention", "calibration", "pyramid", "head_dense1", "head_out"}
  for k in kept:  # the ECG modules and the head keep their own initialisation
    np.testing.assert_array_equal(after[k], before[k], err_msg="/".join(k))
  assert not np.any(variables["params"]["multiscale"]["project_bn"]["scale"])  # a fresh block is the identity ...

  # ... so the loaded backbone's ImageNet features pass through the multi-scale block unchanged
  ms_only = get_model("ecg_resnet50", width=8, num_classes=0, **{**ALL_OFF, "multiscale": True})
  sub = {c: {k: variables[c][k] for k in ("backbone", "multiscale")} for c in ("params", "batch_stats")}
  feats, _ = jax.jit(lambda v, x: ms_only.apply(v, x, train=False))(sub, x)
  with torch.no_grad():
    ref = tm.forward_features(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))).numpy()
  assert np.abs(ref).max() > 0.1 and float(np.max(np.abs(np.asarray(feats) - ref))) <= TOL


def test_config_builds_the_model_and_plain_turns_every_module_off():
  c = load_config("ecg_image_resnet50:smoke", ["model.kwargs.pyramid=false"])
  assert c.model.name == "ecg_resnet50" and c.task.num_classes == 5 and c.init.imagenet == ""
  m = get_model(c.model.name, num_classes=c.task.num_classes, **c.model.kwargs)
  assert isinstance(m, EcgResNet) and not m.pyramid and m.multiscale and tuple(m.head_units) == (16, 8)
  (y, aux), _ = jax.eval_shape(lambda: m.init_with_output(jax.random.key(0), jnp.zeros((4, 32, 32, 3))))
  assert y.shape == (4, 5) and "components" in aux
  plain = load_config("ecg_image_resnet50:plain").model.kwargs
  assert not any(plain[s] for s in SWITCHES) and list(plain.head_units) == [512, 256] and plain.width == 64
