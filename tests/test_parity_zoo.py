"""Parity for the model zoo: EfficientNet, ViT, VideoViT, temporal models (cnn_lstm, tcn, mhsa, conv3d) and the
spatio-temporal fusion model: torch == JAX == golden within 1e-4 (eval, float32), plus padded-frame masks.
(The ResNet families are in test_parity.py; the shared helpers in tests/helpers/parity.py.)"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

from echojax.export import to_module
from echojax.models import get_model
from tests.helpers.parity import ALL_CASES, TOL, case_params, check_case, is_zoo, make_input, make_variables

ZOO_CASES = [c for c in ALL_CASES if is_zoo(c)]


@pytest.mark.parametrize("case", case_params(ZOO_CASES))
def test_zoo_parity_and_golden(case):
  check_case(case)


MASK_CASES = {
  "video_vit": {"variant": "mu/8x2", "attention": "joint", "pool": "gap", "num_classes": 3},
  "cnn_lstm": {"backbone": "resnet18", "backbone_kwargs": {"width": 8}, "hidden_size": 8, "num_classes": 3},
  "conv3d": {"widths": [8], "temporal_strides": [2], "num_classes": 3},
  "spatiotemporal": {"backbone": "resnet18", "backbone_kwargs": {"width": 8}, "mode": "dynamic", "temporal": "mhsa",
                     "temporal_kwargs": {"width": 8, "max_len": 4, "num_heads": 2, "mlp_dim": 16, "depth": 1},
                     "num_classes": 3},
}


@pytest.mark.parametrize("arch", list(MASK_CASES))
def test_frame_mask_parity(arch):
  """Padded frames (mask False, garbage content) are handled the same way on both sides."""
  kw = MASK_CASES[arch]
  model = get_model(arch, **kw)
  x = make_input((2, 4, 16, 16, 3), 4)
  x[1, 2:] = np.nan  # padded frames may hold garbage; it must not leak into valid outputs
  mask = np.array([[True] * 4, [True, True, False, False]])
  variables = make_variables(model, x, 5, 1.0)
  tkw = {"image_size": [16, 16], "num_frames": 4} if arch == "video_vit" else {}
  module = to_module(variables, arch, kw, tkw)
  y_jax, _ = jax.jit(lambda v, x, m: model.apply(v, x, train=False, mask=m))(variables, x, mask)
  with torch.no_grad():
    y_torch = module(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))), torch.from_numpy(mask)).numpy()
  assert np.isfinite(y_torch).all() and np.isfinite(np.asarray(y_jax)).all()
  assert float(np.max(np.abs(y_torch - np.asarray(y_jax)))) <= TOL
