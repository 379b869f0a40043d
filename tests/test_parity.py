"""JAX model == converted echoforge torch module, asserted (eval mode, float32, max |diff| <= 1e-4).

The ResNet families (ResNet both layouts, per-frame ResNet, R3D, R(2+1)D, EchoSDNet both layouts) are checked here;
the zoo (EfficientNet, ViT, VideoViT, temporal models, fusion) in test_parity_zoo.py (split to keep each file short).
Each family is checked on fixed-seed variables with non-trivial BatchNorm statistics
(``echojax.convert.random_variables``) against the golden outputs in tests/golden/parity_golden.json (a regression
guard for the conversion), plus full-size ResNet18 and EchoSDNet at 224 x 224.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
import torch

from echoforge import archs
from echoforge.models import build
from echojax.convert import (flatten, flax_to_torch, random_variables, rules_for, torch_to_flax)
from echojax.errors import UserError
from echojax.export import to_module
from echojax.models import get_model

TOL = 1e-4
GOLDEN = Path(__file__).resolve().parent / "golden" / "parity_golden.json"
ALL_CASES = json.loads(GOLDEN.read_text())["cases"]
#: the families checked here; every other family of the table is the zoo (test_parity_zoo.py)
RESNET_FAMILIES = ("resnet", "frame_resnet", "video_resnet", "echosdnet")


def is_zoo(case) -> bool:
  return archs.get(case["arch"]).family not in RESNET_FAMILIES


CASES = [c for c in ALL_CASES if not is_zoo(c)]


def _input(shape, seed) -> np.ndarray:
  return np.random.default_rng(seed).random(tuple(shape), dtype=np.float32)


def _jax(model, variables, x) -> np.ndarray:
  out, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  return np.asarray(out, np.float32)


def _torch(module, x_channels_last: np.ndarray) -> np.ndarray:
  x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x_channels_last, -1, 1)))  # NHWC -> NCHW, NTHWC -> NCTHW
  assert not module.training
  with torch.no_grad():
    return module(x).numpy()


def _variables(model, x, seed: int, input_scale: float):
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  return random_variables(abstract, seed, input_scale=input_scale)


def check_case(case) -> None:
  """Torch == JAX == golden for one golden-file case (also used by test_parity_zoo.py)."""
  model = get_model(case["arch"], **case["kwargs"])
  x = _input(case["input_shape"], case["input_seed"])
  variables = _variables(model, x, case["variables_seed"], case["input_scale"])
  module = to_module(variables, case["arch"], case["kwargs"], case.get("torch_kwargs"))

  # BatchNorm conversion is really exercised: running statistics are far from the (0, 1) defaults.
  stats = {k: v for k, v in module.state_dict().items() if k.endswith(("running_mean", "running_var"))}
  assert stats or case["arch"] in ("vit", "video_vit", "tcn"), "model has no BatchNorm?"
  assert all(v.abs().max() > 0.05 for k, v in stats.items() if k.endswith("running_mean"))
  assert all((v - 1).abs().max() > 0.05 for k, v in stats.items() if k.endswith("running_var"))

  y_jax = _jax(model, variables, x)
  y_torch = _torch(module, x)
  golden = np.asarray(case["output"], np.float32)
  assert y_torch.shape == y_jax.shape == golden.shape
  assert np.abs(y_torch).max() > 0.05  # a real signal, not all zeros
  d_tj = float(np.max(np.abs(y_torch - y_jax)))
  d_tg = float(np.max(np.abs(y_torch - golden)))
  d_jg = float(np.max(np.abs(y_jax - golden)))
  assert d_tj <= TOL, f"{case['id']}: torch vs JAX max |diff| {d_tj}"
  assert d_tg <= TOL, f"{case['id']}: torch vs golden max |diff| {d_tg} (conversion regression?)"
  assert d_jg <= TOL, (f"{case['id']}: JAX vs golden max |diff| {d_jg}: the JAX model changed; if intended, "
                       "regenerate with python tests/golden/make_golden.py")


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_parity_and_golden(case):
  check_case(case)


def test_golden_file_covers_every_architecture():
  """Every entry of the architecture table (echoforge.archs.ARCHS) has at least one golden case, and every golden
  case names an entry."""
  covered = {c["arch"] for c in ALL_CASES}
  missing = [name for name in archs.ARCHS if name not in covered]
  assert not missing, f"no golden case for {missing}: add one to tests/golden/make_golden.py and run it with --add"
  assert covered <= set(archs.ARCHS), covered - set(archs.ARCHS)
  assert len({c["id"] for c in ALL_CASES}) == len(ALL_CASES)


@pytest.mark.parametrize("arch,kwargs,scale", [("resnet18", {"num_classes": 1000}, 1.0),
                                               ("echosdnet", {}, 128.0)], ids=["resnet18", "echosdnet"])
def test_full_size_parity(arch, kwargs, scale):
  """Full-width models at 224 x 224: torchvision's resnet18 (1000 classes) and the keras-layout EchoSDNet."""
  model = get_model(arch, **kwargs)
  x = _input((1, 224, 224, 3), 3)
  variables = _variables(model, x, 7, scale)
  module = to_module(variables, arch, kwargs)
  if arch == "resnet18":
    assert sum(p.numel() for p in module.parameters()) == 11_689_512
  y_jax, y_torch = _jax(model, variables, x), _torch(module, x)
  assert np.abs(y_torch).max() > 0.1
  diff = float(np.max(np.abs(y_torch - y_jax)))
  assert diff <= TOL, f"{arch}: torch vs JAX max |diff| {diff}"


def test_round_trip_is_exact():
  """flax -> torch -> flax gives back every array bit for bit (the transforms are exact inverses)."""
  case = next(c for c in CASES if c["arch"] == "r2plus1d_18")
  model = get_model(case["arch"], **case["kwargs"])
  x = _input(case["input_shape"], 0)
  variables = _variables(model, x, 3, 1.0)
  rules = rules_for(case["arch"], case["kwargs"], variables)
  back = torch_to_flax(flax_to_torch(variables, rules), rules, like=variables)
  a, b = flatten(variables), flatten(back)
  assert set(a) == set(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg="/".join(k))


def test_kernel_transforms_match_torch_layout():
  """conv HWIO -> OIHW (3,2,0,1), 3D THWIO -> OITHW (4,3,0,1,2), dense .T, and their inverses."""
  from echojax.convert import to_flax_array, to_torch_array

  k2 = np.arange(3 * 5 * 2 * 4, dtype=np.float32).reshape(3, 5, 2, 4)  # H, W, I, O
  t2 = to_torch_array(k2, "conv2d")
  assert t2.shape == (4, 2, 3, 5) and t2[3, 1, 2, 4] == k2[2, 4, 1, 3]
  k3 = np.arange(2 * 3 * 5 * 2 * 4, dtype=np.float32).reshape(2, 3, 5, 2, 4)  # T, H, W, I, O
  t3 = to_torch_array(k3, "conv3d")
  assert t3.shape == (4, 2, 2, 3, 5) and t3[3, 1, 1, 2, 4] == k3[1, 2, 4, 1, 3]
  d = np.arange(6, dtype=np.float32).reshape(2, 3)
  assert to_torch_array(d, "dense").shape == (3, 2)
  for arr, kind in ((k2, "conv2d"), (k3, "conv3d"), (d, "dense")):
    np.testing.assert_array_equal(to_flax_array(to_torch_array(arr, kind), kind), arr)


TORCH_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


@pytest.mark.parametrize("cid", ["resnet18_tv", "r2plus1d_18", "mhsa_resnet18", "echosdnet_tv"])
def test_torch_keys_are_the_flax_paths(cid):
  """ResNets too (also as a backbone): every torch state-dict key is the flax module path joined by "." plus the
  tensor name, and the mirror's state dict has exactly those keys (plus BatchNorm's num_batches_tracked)."""
  case = next(c for c in ALL_CASES if c["id"] == cid)
  model = get_model(case["arch"], **case["kwargs"])
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), _input(case["input_shape"], 0), train=False))
  want = {".".join([*k[1:-1], TORCH_LEAF.get(k[-1], k[-1])]) for k in flatten(abstract)
          if k[0] in ("params", "batch_stats")}
  want |= {k.rsplit(".", 1)[0] + ".num_batches_tracked" for k in want if k.endswith(".running_mean")}
  rules = rules_for(case["arch"], case["kwargs"], abstract)
  assert {r.torch for r in rules} == want
  for r in rules:
    if r.flax is not None:
      assert r.torch.rsplit(".", 1)[0] == ".".join(r.flax[1:-1])
  module = build(case["arch"], **case["kwargs"], **case.get("torch_kwargs", {}))
  assert set(module.state_dict()) == want


def test_unmapped_or_missing_weights_fail_loudly():
  case = next(c for c in CASES if c["id"] == "resnet18_tv")
  model = get_model(case["arch"], **case["kwargs"])
  variables = _variables(model, _input(case["input_shape"], 0), 0, 1.0)
  rules = rules_for(case["arch"], case["kwargs"], variables)
  extra = {**variables, "params": {**variables["params"], "mystery": {"kernel": np.zeros((2, 2), np.float32)}}}
  with pytest.raises(UserError, match="mystery/kernel"):
    flax_to_torch(extra, rules)
  fewer = {**variables, "params": {k: v for k, v in variables["params"].items() if k != "head"}}
  with pytest.raises(UserError, match="head/kernel"):
    flax_to_torch(fewer, rules)
  # The torch side checks shapes too: a head built for 7 classes does not take 5-class weights.
  with pytest.raises(UserError, match="head.weight"):
    to_module(variables, case["arch"], {**case["kwargs"], "num_classes": 7})
