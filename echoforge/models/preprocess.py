"""Input normalisation done inside a model, mirroring the JAX models' ``preprocess`` option.

Modes (input is ``(N, C, ...)`` RGB in [0, 1]):

* ``None`` / ``"none"``: the input is used as given.
* ``"torch"``: ``(x - mean) / std`` with ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
* ``"caffe"``: keras.applications ``preprocess_input`` for ResNet50: ``x * 255``, RGB -> BGR, minus the BGR mean
  (103.939, 116.779, 123.68), no scaling.
"""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
MODES = (None, "none", "torch", "caffe")


class Preprocess(nn.Module):
  """Normalises an RGB input in [0, 1]; no parameters (constants are not in the state dict)."""

  def __init__(self, mode: str | None = None):
    super().__init__()
    if mode not in MODES:
      raise ValueError(f"unknown preprocess mode {mode!r}; use one of {MODES}")
    self.mode = None if mode == "none" else mode

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    if self.mode is None:
      return x
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if self.mode == "torch":
      mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(shape)
      std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(shape)
      return (x - mean) / std
    bgr = torch.flip(x, dims=(1,)) * 255.0
    return bgr - torch.tensor(CAFFE_BGR_MEAN, dtype=x.dtype, device=x.device).view(shape)

  def extra_repr(self) -> str:
    return f"mode={self.mode!r}"
