"""EchoSDNet in plain PyTorch, mirroring ``echojax.models.echosdnet``.

Input preprocessing (inside the model) -> ResNet50 backbone (``layout="keras"`` by default; ``"torchvision"``
selectable) -> global average pool -> ``head_dense1`` Linear(128) + ReLU -> ``head_dense2`` Linear(64) + ReLU ->
Dropout(0.5) -> ``head_out`` Linear(num_classes=2) logits (softmax is the caller's).

Input: ``(N, 3, 224, 224)`` float32 RGB in [0, 1] (PyTorch layout; the JAX model takes ``(B, 224, 224, 3)``).
``preprocess`` is applied inside the model as on the JAX side (None = the layout's default: "caffe" for keras,
"torch" for torchvision; "none" = unchanged), so callers feed [0, 1] images.
State-dict keys: ``backbone.*`` (see :mod:`echoforge.models.resnet`), ``head_dense{1,2}``, ``head_out``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from echoforge.models.preprocess import Preprocess
from echoforge.models.resnet import ResNet

DEFAULT_PREPROCESS = {"keras": "caffe", "torchvision": "torch"}


class EchoSDNet(nn.Module):
  """ResNet50 + GAP -> Dense128 -> Dense64 -> Dropout(0.5) -> Dense(num_classes).

  Args (as the JAX model; ``frozen_stages``/``dtype`` only matter for JAX training and are ignored by ``build``):
    num_classes: output logits (2); 0/None = return the 64-d hidden features.
    width: backbone base width (64 = standard ResNet50).
    layout: backbone layout, "keras" (default) or "torchvision".
    preprocess: None (layout default), "caffe", "torch" or "none".
    depth: backbone depth (50).
    hidden: sizes of the hidden dense layers.
    dropout_rate: dropout before the output layer (inactive in eval mode).
  """

  def __init__(self, num_classes: int | None = 2, width: int = 64, layout: str = "keras",
               preprocess: str | None = None, depth: int = 50, hidden: Sequence[int] = (128, 64),
               dropout_rate: float = 0.5):
    super().__init__()
    mode = DEFAULT_PREPROCESS.get(layout, "none") if preprocess is None else preprocess
    self.preprocess = Preprocess(mode)
    self.backbone = ResNet(depth=depth, num_classes=None, width=width, layout=layout)
    d = self.backbone.num_features
    self.hidden_names = []
    for j, units in enumerate(hidden, start=1):
      setattr(self, f"head_dense{j}", nn.Linear(d, units))
      self.hidden_names.append(f"head_dense{j}")
      d = units
    self.head_dropout = nn.Dropout(dropout_rate)
    self.head_out = nn.Linear(d, num_classes) if num_classes else None
    self.relu = nn.ReLU()

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h = self.backbone.forward_features(self.preprocess(x))
    for name in self.hidden_names:
      h = self.relu(getattr(self, name)(h))
    h = self.head_dropout(h)
    return h if self.head_out is None else self.head_out(h)
