"""JAX model == converted echoforge torch module, asserted (eval mode, float32, max |diff| <= 1e-4).

The ResNet families (ResNet both layouts, per-frame ResNet, R3D, R(2+1)D, EchoSDNet both layouts, the ECG-image
ResNet with every module on and all off) are checked here;
the zoo (EfficientNet, ViT, VideoViT, temporal models, fusion) in test_parity_zoo.py (split to keep each file short;
the helpers both use are tests/helpers/parity.py).
Each family is checked on fixed-seed variables with non-trivial BatchNorm statistics
(``echojax.convert.random_variables``) against the golden outputs in tests/golden/parity_golden.json (a regression
guard for the conversion), plus full-size ResNet18 and EchoSDNet at 224 x 224.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from echoforge import archs
from echoforge.models import build
from echojax.convert import flatten, flax_to_torch, rules_for, torch_to_flax
from echojax.errors import UserError
from echojax.export import to_module
from echojax.models import get_model
from tests.helpers.parity import (ALL_CASES, TOL, case_params, check_case, is_zoo, jax_output, make_input,
                                  make_variables, torch_output)

CASES = [c for c in ALL_CASES if not is_zoo(c)]


@pytest.mark.parametrize("case", case_params(CASES))
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


@pytest.mark.parametrize("arch,kwargs,scale", [pytest.param("resnet18", {"num_classes": 1000}, 1.0, id="resnet18"),
                                               pytest.param("echosdnet", {}, 128.0, id="echosdnet",
                                                            marks=pytest.mark.slow)])
def test_full_size_parity(arch, kwargs, scale):
  """Full-width models at 224 x 224: torchvision's resnet18 (1000 classes) and the keras-layout EchoSDNet."""
  model = get_model(arch, **kwargs)
  x = make_input((1, 224, 224, 3), 3)
  variables = make_variables(model, x, 7, scale)
  module = to_module(variables, arch, kwargs)
  if arch == "resnet18":
    assert sum(p.numel() for p in module.parameters()) == 11_689_512
  y_jax, y_torch = jax_output(model, variables, x), torch_output(module, x)
  assert np.abs(y_torch).max() > 0.1
  diff = float(np.max(np.abs(y_torch - y_jax)))
  assert diff <= TOL, f"{arch}: torch vs JAX max |diff| {diff}"


def test_round_trip_is_exact():
  """flax -> torch -> flax gives back every array bit for bit (the transforms are exact inverses)."""
  case = next(c for c in CASES if c["arch"] == "r2plus1d_18")
  model = get_model(case["arch"], **case["kwargs"])
  x = make_input(case["input_shape"], 0)
  variables = make_variables(model, x, 3, 1.0)
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


@pytest.mark.parametrize("cid", ["resnet18_tv", "r2plus1d_18", "mhsa_resnet18", "echosdnet_tv",
                                 "ecg_resnet50_default"])
def test_torch_keys_are_the_flax_paths(cid):
  """ResNets too (also as a backbone): every torch state-dict key is the flax module path joined by "." plus the
  tensor name, and the mirror's state dict has exactly those keys (plus BatchNorm's num_batches_tracked)."""
  case = next(c for c in ALL_CASES if c["id"] == cid)
  model = get_model(case["arch"], **case["kwargs"])
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), make_input(case["input_shape"], 0), train=False))
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
  variables = make_variables(model, make_input(case["input_shape"], 0), 0, 1.0)
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
