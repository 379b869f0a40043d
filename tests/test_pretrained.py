"""ImageNet init from local files (echojax.pretrained): torchvision .pth/.safetensors and Keras .h5 written by the
test itself (nothing is downloaded), mapped into ResNet / EchoSDNet backbones with a clear report."""

from __future__ import annotations

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from echoforge import torchvision_names
from echoforge.models import ResNet as TorchResNet
from echojax.convert import flatten, random_variables
from echojax.errors import UserError
from echojax.models import get_model
from echojax.pretrained import load_imagenet_resnet


def _abstract_vars(name: str, seed: int = 0, **kw):
  model = get_model(name, **kw)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
  return model, random_variables(abstract, seed)


def _torchvision_state_dict(module) -> dict[str, torch.Tensor]:
  """The state dict of an echoforge ResNet under torchvision's names, as a torchvision file holds it."""
  sd = module.state_dict()
  names = torchvision_names.to_torchvision({k: tuple(v.shape) for k, v in sd.items()})
  out = {names[k]: v for k, v in sd.items()}
  assert {"conv1.weight", "bn1.running_var", "layer2.0.downsample.1.weight", "fc.bias"} <= set(out)
  return out


@pytest.fixture(scope="module")
def torch_resnet50():
  """An echoforge (torchvision-layout) ResNet50 at width 8 with a 10-class head and non-trivial BN statistics."""
  torch.manual_seed(0)
  m = TorchResNet(depth=50, width=8, num_classes=10)
  with torch.no_grad():
    for mod in m.modules():
      if isinstance(mod, torch.nn.BatchNorm2d):
        mod.running_mean.normal_(0, 0.1)
        mod.running_var.uniform_(0.5, 1.5)
        mod.weight.uniform_(0.5, 1.0)
        mod.bias.normal_(0, 0.1)
  return m.eval()


def test_torchvision_pth_into_resnet50_outputs_match(tmp_path, torch_resnet50):
  path = tmp_path / "resnet50.pth"
  torch.save(_torchvision_state_dict(torch_resnet50), path)
  model, init = _abstract_vars("resnet50", width=8, num_classes=0)  # headless: pooled features
  variables, report = load_imagenet_resnet(path, init)
  n_backbone = len(flatten({k: init[k] for k in ("params", "batch_stats")}))
  assert len(report.loaded) == n_backbone and report.missing == [] and report.unmatched == []
  assert report.skipped_head == ["fc.bias", "fc.weight"]
  assert "loaded 265 tensors" in report.summary()

  x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
  feats, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  with torch.no_grad():
    ref = torch_resnet50.forward_features(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))).numpy()
  assert np.abs(ref).max() > 0.1
  assert float(np.max(np.abs(np.asarray(feats) - ref))) <= 1e-4


def test_safetensors_into_echosdnet_backbone_keeps_head(tmp_path, torch_resnet50):
  from safetensors.torch import save_file

  path = tmp_path / "resnet50.safetensors"
  save_file({f"module.{k}": v.contiguous() for k, v in _torchvision_state_dict(torch_resnet50).items()}, str(path))
  _, init = _abstract_vars("echosdnet", width=8, layout="torchvision")
  variables, report = load_imagenet_resnet(path, init)
  assert report.missing == [] and report.unmatched == [] and len(report.loaded) == 265
  sd = _torchvision_state_dict(torch_resnet50)
  np.testing.assert_array_equal(variables["params"]["backbone"]["stem_conv"]["kernel"],
                                sd["conv1.weight"].numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables["batch_stats"]["backbone"]["stage4_block2"]["bn3"]["var"],
                                sd["layer4.2.bn3.running_var"].numpy())
  for name in ("head_dense1", "head_dense2", "head_out"):  # the head is never touched
    np.testing.assert_array_equal(variables["params"][name]["kernel"], init["params"][name]["kernel"])


def test_temporal_model_resnet_frame_backbone(tmp_path):
  """Per-frame ResNet backbones of the temporal models (params/backbone/net) take the weights too."""
  torch.manual_seed(1)
  src = TorchResNet(depth=18, width=8, num_classes=10)
  path = tmp_path / "resnet18.pth"
  torch.save(_torchvision_state_dict(src), path)
  model = get_model("mhsa", backbone="resnet18", backbone_kwargs={"width": 8}, width=8, max_len=4, num_heads=2,
                    mlp_dim=8, depth=1)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 2, 32, 32, 3)), train=False))
  init = random_variables(abstract, 0)
  variables, report = load_imagenet_resnet(path, init)
  assert report.missing == [] and report.unmatched == [] and len(report.loaded) == 20 + 20 * 4
  np.testing.assert_array_equal(variables["params"]["backbone"]["net"]["stage4_block1"]["conv2"]["kernel"],
                                _torchvision_state_dict(src)["layer4.1.conv2.weight"].numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables["params"]["temporal"]["proj"]["kernel"],
                                init["params"]["temporal"]["proj"]["kernel"])


def test_unmatched_and_missing_keys_are_reported(tmp_path, torch_resnet50):
  sd = dict(_torchvision_state_dict(torch_resnet50))
  sd["mystery.weight"] = torch.zeros(3)
  del sd["layer4.2.bn3.running_var"]
  path = tmp_path / "partial.pth"
  torch.save(sd, path)
  _, init = _abstract_vars("resnet50", width=8, num_classes=0)
  variables, report = load_imagenet_resnet(path, init)
  assert report.unmatched == ["mystery.weight"]
  assert report.missing == ["batch_stats/stage4_block2/bn3/var"]
  assert "mystery.weight" in report.summary() and "stage4_block2/bn3/var" in report.summary()
  np.testing.assert_array_equal(variables["batch_stats"]["stage4_block2"]["bn3"]["var"],
                                init["batch_stats"]["stage4_block2"]["bn3"]["var"])


def _keras_layers(variables) -> dict[str, dict[str, np.ndarray]]:
  """keras.applications ResNet50 layer names/weights from keras-layout flax variables of ResNet50 (width any)."""
  from echojax.pretrained import KERAS_BN, _keras_flax_names

  p, s = variables["params"], variables["batch_stats"]
  inv_bn = {v: k for k, v in KERAS_BN.items()}
  layers = {}
  for lname, mod in _keras_flax_names(50).items():
    pm, sm = p, s
    for m in mod:
      pm, sm = pm[m], sm.get(m, {}) if isinstance(sm, dict) else {}
    if lname.endswith("_bn"):
      layers[lname] = {inv_bn[("params", "scale")]: pm["scale"], inv_bn[("params", "bias")]: pm["bias"],
                       "moving_mean": sm["mean"], "moving_variance": sm["var"]}
    else:
      layers[lname] = {"kernel": pm["kernel"], "bias": pm["bias"]}
  return layers


def _write_keras2_h5(path, layers, head=True):
  """The Keras 2 weight-file structure: root attr layer_names; group/<layer>/<layer>/<weight>:0 + weight_names."""
  with h5py.File(path, "w") as f:
    names = list(layers) + (["avg_pool", "predictions"] if head else [])
    f.attrs["layer_names"] = [n.encode() for n in names]
    f.attrs["backend"] = b"tensorflow"
    for lname in names:
      g = f.create_group(lname)
      weights = layers.get(lname, {})
      if lname == "predictions":
        weights = {"kernel": np.zeros((2048, 1000), np.float32), "bias": np.zeros(1000, np.float32)}
      wn = [f"{lname}/{w}:0".encode() for w in weights]
      g.attrs["weight_names"] = wn
      for w, arr in weights.items():
        g.create_dataset(f"{lname}/{w}:0", data=np.asarray(arr, np.float32))


def test_keras_h5_into_echosdnet(tmp_path):
  _, src = _abstract_vars("resnet50", seed=3, width=8, num_classes=0, layout="keras")
  path = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
  _write_keras2_h5(path, _keras_layers(src))
  _, init = _abstract_vars("echosdnet", seed=4, width=8)  # keras layout by default
  variables, report = load_imagenet_resnet(path, init)
  assert report.layout == "keras" and report.missing == [] and report.unmatched == []
  assert report.skipped_head == ["predictions/bias", "predictions/kernel"]
  got = flatten(variables)
  for k, v in flatten(src).items():  # every backbone tensor equals the file's
    np.testing.assert_array_equal(got[(k[0], "backbone", *k[1:])], v, err_msg="/".join(k))
  np.testing.assert_array_equal(variables["params"]["head_out"]["kernel"], init["params"]["head_out"]["kernel"])

  # Keras 3 ``.weights.h5`` layout (layers/<name>/vars/<i>) reads the same.
  p3 = tmp_path / "model.weights.h5"
  with h5py.File(p3, "w") as f:
    for lname, weights in _keras_layers(src).items():
      g = f.create_group(f"layers/{lname}/vars")
      order = ("gamma", "beta", "moving_mean", "moving_variance") if lname.endswith("_bn") else ("kernel", "bias")
      for i, w in enumerate(order):
        g.create_dataset(str(i), data=weights[w])
  v3, r3 = load_imagenet_resnet(p3, init)
  assert r3.missing == [] and len(r3.loaded) == len(report.loaded)
  for k, v in flatten(variables).items():
    np.testing.assert_array_equal(flatten(v3)[k], v)


def test_shape_mismatch_and_wrong_layout_name_the_problem(tmp_path, torch_resnet50):
  _, src = _abstract_vars("resnet50", width=8, num_classes=0, layout="keras")
  path = tmp_path / "w8.h5"
  _write_keras2_h5(path, _keras_layers(src), head=False)
  _, wide = _abstract_vars("echosdnet", width=16)
  with pytest.raises(UserError, match=r"conv1_conv/(kernel|bias) has shape"):
    load_imagenet_resnet(path, wide)
  pth = tmp_path / "tv.pth"
  torch.save(_torchvision_state_dict(torch_resnet50), pth)
  _, keras_model = _abstract_vars("echosdnet", width=8)
  with pytest.raises(UserError, match="model.layout"):
    load_imagenet_resnet(pth, keras_model)
  with pytest.raises(UserError, match="not found"):
    load_imagenet_resnet(tmp_path / "absent.pth", keras_model)
