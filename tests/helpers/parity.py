"""Parity helpers shared by tests/test_parity.py (ResNet families) and tests/test_parity_zoo.py (the zoo): the
golden-file cases (tests/golden/parity_golden.json) and the torch == JAX == golden check of one case."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
import torch

from echoforge import archs
from echojax.convert import random_variables
from echojax.export import to_module
from echojax.models import get_model

TOL = 1e-4
GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "parity_golden.json"
ALL_CASES = json.loads(GOLDEN.read_text())["cases"]
#: the families test_parity.py checks; every other family of the table is the zoo (test_parity_zoo.py)
RESNET_FAMILIES = ("resnet", "frame_resnet", "video_resnet", "echosdnet", "ecg_resnet")
#: golden cases of the deeper / wider members of families whose smallest member stays in the fast tier
SLOW_CASES = {"resnet101_tv", "resnet152_keras", "video_resnet_r3d_34", "efficientnet_b3", "efficientnet_b4",
              "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_variant_b5"}


def case_params(cases) -> list:
  """``cases`` as pytest parameters named by id, the SLOW_CASES marked slow."""
  return [pytest.param(c, id=c["id"], marks=[pytest.mark.slow] if c["id"] in SLOW_CASES else []) for c in cases]


def is_zoo(case) -> bool:
  return archs.get(case["arch"]).family not in RESNET_FAMILIES


def make_input(shape, seed) -> np.ndarray:
  return np.random.default_rng(seed).random(tuple(shape), dtype=np.float32)


def jax_output(model, variables, x) -> np.ndarray:
  out, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  return np.asarray(out, np.float32)


def torch_output(module, x_channels_last: np.ndarray) -> np.ndarray:
  x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x_channels_last, -1, 1)))  # NHWC -> NCHW, NTHWC -> NCTHW
  assert not module.training
  with torch.no_grad():
    return module(x).numpy()


def make_variables(model, x, seed: int, input_scale: float):
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  return random_variables(abstract, seed, input_scale=input_scale)


def check_case(case) -> None:
  """Torch == JAX == golden for one golden-file case."""
  model = get_model(case["arch"], **case["kwargs"])
  x = make_input(case["input_shape"], case["input_seed"])
  variables = make_variables(model, x, case["variables_seed"], case["input_scale"])
  module = to_module(variables, case["arch"], case["kwargs"], case.get("torch_kwargs"))

  # BatchNorm conversion is really exercised: running statistics are far from the (0, 1) defaults.
  stats = {k: v for k, v in module.state_dict().items() if k.endswith(("running_mean", "running_var"))}
  assert stats or case["arch"] in ("vit", "video_vit", "tcn"), "model has no BatchNorm?"
  assert all(v.abs().max() > 0.05 for k, v in stats.items() if k.endswith("running_mean"))
  assert all((v - 1).abs().max() > 0.05 for k, v in stats.items() if k.endswith("running_var"))

  y_jax = jax_output(model, variables, x)
  y_torch = torch_output(module, x)
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
