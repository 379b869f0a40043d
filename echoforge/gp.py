"""The key-frame study's Gaussian process in plain PyTorch: mean and standard deviation of EF from features, read
from the folder ``echojax.gp.GPRegressor.save`` writes (``gp.safetensors`` + ``gp.json``), in float64.

    gp = GaussianProcess.load("workdirs/keyframe_lvef_demo/gp/es")
    mean, std = gp(features)          # (N, D) backbone features of one key frame -> (N,), (N,) in EF units

Same computation as ``GPRegressor.predict`` (standardise, PCA, RBF kernel against the training inputs, posterior
mean ``k @ alpha``, variance ``amplitude + noise - |L^-1 k|^2``), equal to it within 1e-4 (tests/test_keyframe_study).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file


class GaussianProcess(torch.nn.Module):
  def __init__(self, arrays: dict[str, torch.Tensor], meta: dict):
    super().__init__()
    for k, v in arrays.items():
      self.register_buffer(k, v.to(torch.float64))
    self.meta = dict(meta)

  @classmethod
  def load(cls, path: str | Path) -> "GaussianProcess":
    path = Path(path)
    return cls(load_file(str(path / "gp.safetensors")), json.loads((path / "gp.json").read_text()))

  def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = self.meta
    x = x.to(torch.float64)
    b = ((x - self.x_mean) / self.x_scale - self.pca_mean) @ self.pca_components.T
    d2 = (b ** 2).sum(1)[:, None] + (self.train_inputs ** 2).sum(1)[None] - 2 * b @ self.train_inputs.T
    k = m["amplitude"] * torch.exp(-0.5 * d2.clamp_min(0.0) / m["length_scale"] ** 2)
    mean = k @ self.alpha
    v = torch.linalg.solve_triangular(self.chol, k.T, upper=False)
    var = (m["amplitude"] + m["noise"] - (v ** 2).sum(0)).clamp_min(0.0)
    return mean * m["y_scale"] + m["y_mean"], var.sqrt() * m["y_scale"]
