"""MLP heads on feature vectors (seed 004: key-frame ResNet50 features -> EF class / EF), optionally with the
image backbone the features came from, so a trained head exports as one image -> output model.

    FeatureMLP(num_classes=2, hidden=(256,), dropout=0.5, batch_norm=True)          # (B, D) features in
    FeatureMLP(num_classes=1, backbone="resnet50")                                  # (B, H, W, C) images in
    variables = with_backbone(mlp_variables, backbone_variables)                    # for the image model

Each hidden layer ``fc{i}`` (Dense) -> ``bn{i}`` (BatchNorm, when ``batch_norm``) -> ReLU -> Dropout; then the
Dense ``head`` (no head when ``num_classes=0``). A (B, D) input skips the backbone. Module names are the torch
mirror's attributes (``echoforge.models.mlp.FeatureMLP``); aux ``features`` = the last hidden activations.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp
from flax.core import FrozenDict, freeze

from echojax.errors import UserError
from echojax.models.registry import get_model


class FeatureMLP(nn.Module):
  num_classes: int | None = 2
  hidden: Sequence[int] = (256,)
  dropout: float = 0.5
  batch_norm: bool = True
  backbone: str | None = None
  backbone_kwargs: Mapping[str, Any] = FrozenDict()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> tuple[jnp.ndarray, dict]:
    if x.ndim == 4:
      if not self.backbone:
        raise UserError(f"feature_mlp got images {x.shape} but has no backbone (config field model.kwargs.backbone); "
                        "feed (B, D) features or name an image backbone such as resnet50")
      kw = dict(self.backbone_kwargs)
      kw.setdefault("dtype", self.dtype)
      net = get_model(self.backbone, num_classes=0, parent=None, **kw).clone(parent=self, name="backbone")
      x, _ = net(x, train=train)
    if x.ndim != 2:
      raise UserError(f"feature_mlp expects (B, D) features or (B, H, W, C) images, got shape {x.shape}")
    h = x.astype(self.dtype)
    for i, units in enumerate(self.hidden):
      h = nn.Dense(int(units), dtype=self.dtype, name=f"fc{i}")(h)
      if self.batch_norm:
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                         name=f"bn{i}")(h)
      h = nn.relu(h)
      h = nn.Dropout(self.dropout, deterministic=not train)(h)
    aux = {"features": h.astype(jnp.float32)}
    if not self.num_classes:
      return h, aux
    return nn.Dense(int(self.num_classes), dtype=self.dtype, name="head")(h), aux


def feature_mlp(**kwargs) -> FeatureMLP:
  if "backbone_kwargs" in kwargs:
    kwargs["backbone_kwargs"] = freeze(dict(kwargs["backbone_kwargs"] or {}))
  if "hidden" in kwargs:
    kwargs["hidden"] = tuple(int(u) for u in kwargs["hidden"])
  return FeatureMLP(**kwargs)


def with_backbone(mlp_variables: Mapping[str, Any], backbone_variables: Mapping[str, Any]) -> dict:
  """Variables of ``FeatureMLP(backbone=...)`` from an MLP trained on features and the backbone that made them
  (``{"params", "batch_stats"}`` of the image model built with ``num_classes=0``)."""
  out = {}
  for col in ("params", "batch_stats"):
    head = dict(mlp_variables.get(col, {}))
    if "backbone" in head:
      raise UserError(f"the MLP's {col} already hold a backbone; give the MLP trained on features")
    bb = backbone_variables.get(col)
    if col == "params" and not bb:
      raise UserError("backbone variables have no params (give the feature extractor's image model variables)")
    out[col] = {**head, **({"backbone": dict(bb)} if bb else {})}
  if "fc0" not in out["params"] and "head" not in out["params"]:
    raise UserError(f"the MLP variables have no fc0/head parameters (got {sorted(out['params'])})")
  return out
