"""EchoSDNet in plain PyTorch, mirroring ``echojax.models.echosdnet``.

ResNet50 backbone (``layout="keras"`` by default; ``"torchvision"`` selectable) -> global average pool ->
Linear(128) + ReLU -> Linear(64) + ReLU -> Dropout(0.5) -> Linear(num_classes=2) logits (softmax is the caller's).

Input: ``(N, 3, 224, 224)`` float32 RGB in [0, 1] (PyTorch layout; the JAX model takes ``(B, 224, 224, 3)``).
The input normalisation the JAX model applies (``preprocess``) is applied here too, so callers feed [0, 1] images.
State-dict keys: ``backbone.*`` (see :mod:`echoforge.models.resnet`), ``fc1``, ``fc2``, ``out``.
"""

from __future__ import annotations

import torch
from torch import nn

from echoforge.models.resnet import ResNet


class EchoSDNet(nn.Module):
  """ResNet50 + GAP -> Dense128 -> Dense64 -> Dropout(0.5) -> Dense(num_classes).

  Args:
    num_classes: output logits (2).
    width: backbone base width (64 = standard ResNet50).
    layout: backbone layout, "keras" (default) or "torchvision".
    hidden: sizes of the two hidden dense layers.
    dropout: dropout rate before the output layer (inactive in eval mode).
    preprocess: input normalisation inside the model (None, "torch" or "caffe"); default follows the layout
      ("caffe" for keras, "torch" for torchvision), as the JAX model.
  """

  def __init__(self, num_classes: int = 2, width: int = 64, layout: str = "keras", hidden: tuple[int, int] = (128, 64),
               dropout: float = 0.5, preprocess: str | None = "auto", depth: int = 50):
    super().__init__()
    if preprocess == "auto":
      preprocess = "caffe" if layout == "keras" else "torch"
    self.backbone = ResNet(depth=depth, num_classes=None, width=width, layout=layout, preprocess=preprocess)
    d = self.backbone.num_features
    self.fc1 = nn.Linear(d, hidden[0])
    self.fc2 = nn.Linear(hidden[0], hidden[1])
    self.dropout = nn.Dropout(dropout)
    self.out = nn.Linear(hidden[1], num_classes)
    self.relu = nn.ReLU()

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.backbone.forward_features(x)
    x = self.relu(self.fc1(x))
    x = self.relu(self.fc2(x))
    return self.out(self.dropout(x))
