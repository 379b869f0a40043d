"""MLP head on feature vectors in plain PyTorch, mirroring ``echojax.models.mlp.FeatureMLP``.

``fc{i}`` Linear -> ``bn{i}`` BatchNorm1d (eps 1e-5, as the JAX side) -> ReLU -> Dropout, then ``head``; with
``backbone`` (an echoforge image architecture, ``num_classes=0``) an image (N, C, H, W) goes through it first, and
a (N, D) input skips it. ``in_features`` is needed only without a backbone.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn


class FeatureMLP(nn.Module):
  def __init__(self, num_classes: int | None = 2, hidden: Sequence[int] = (256,), dropout: float = 0.5,
               batch_norm: bool = True, backbone: str | None = None,
               backbone_kwargs: Mapping[str, Any] | None = None, in_features: int | None = None):
    super().__init__()
    if backbone:
      from echoforge.models import build  # late: the registry imports this module

      self.backbone = build(backbone, num_classes=0, **dict(backbone_kwargs or {}))
      d = int(self.backbone.num_features)
    elif in_features:
      self.backbone, d = None, int(in_features)
    else:
      raise ValueError("FeatureMLP needs backbone= or in_features=")
    self.hidden = [int(u) for u in hidden]
    for i, units in enumerate(self.hidden):
      setattr(self, f"fc{i}", nn.Linear(d, units))
      if batch_norm:
        setattr(self, f"bn{i}", nn.BatchNorm1d(units, eps=1e-5))
      d = units
    self.batch_norm = batch_norm
    self.drop = nn.Dropout(dropout)
    self.num_features = d
    self.head = nn.Linear(d, num_classes) if num_classes else None

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 4:
      if self.backbone is None:
        raise ValueError(f"images {tuple(x.shape)} given to a FeatureMLP without backbone")
      x = self.backbone(x)
    for i in range(len(self.hidden)):
      x = getattr(self, f"fc{i}")(x)
      if self.batch_norm:
        x = getattr(self, f"bn{i}")(x)
      x = self.drop(torch.relu(x))
    return self.head(x) if self.head is not None else x
