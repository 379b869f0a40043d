"""Spatio-temporal fusion ("spatiotemporal"): a spatial and a temporal stream over the same per-frame features.

    video (B,T,H,W,C) --shared per-frame backbone--> frame features F (B,T,D)   [or pass F directly]
    spatial stream:  masked mean of F over valid frames -> s (B,D)  -> dropout -> Dense -> spatial logits
    temporal stream: temporal encoder (``temporal``: "mhsa" | "tcn" | "cnn_lstm") over F -> u (B,D')
                     -> dropout -> Dense -> temporal logits
    gate g (B,2) = (weight of the spatial stream, weight of the temporal stream); rows sum to 1
    output = g[:,0:1] * spatial + g[:,1:2] * temporal

``mode`` (config ``model.mode``):
- ``"dynamic"``: per sample, g = softmax(Dense(2)([s, u])) -- the gate sees both streams' pooled features;
- ``"learned"``: one global scalar parameter ``gate_logit`` (0 at init, so 0.5/0.5), w = sigmoid(gate_logit),
  g = (w, 1-w) for every sample;
- ``"fixed:w"``: constant w in [0,1] for ablations, g = (w, 1-w): **w weights the spatial stream**
  (``fixed:1`` = spatial only, ``fixed:0`` = temporal only).

``combine`` (``model.combine``): ``"logits"`` (default) mixes the two streams' logits, which works for any head
(classification or regression). ``"probs"`` mixes class probabilities, softmax(spatial) and softmax(temporal), and
returns log(mixture) so the output can still be fed to a softmax cross-entropy (classification with >= 2 classes
only).

aux: ``gate`` (B,2) float32 (column 0 = spatial weight; evaluation writes it to the predictions CSV),
``spatial_logits``, ``temporal_logits`` (B,num_classes), ``features`` (B, D+D') = [s, u].
Accepts ``mask`` (B,T) bool (False = padded frame): padded frames are left out of the spatial mean and of the
temporal encoder (see echojax.models.temporal for each encoder's mask handling).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax.core import FrozenDict, freeze

from echojax.errors import UserError
from echojax.models.temporal import DEFAULT_BACKBONE, _check_mask, frame_features, make_encoder
from echojax.models.vit import masked_mean

COMBINES = ("logits", "probs")


def parse_mode(mode: str) -> tuple[str, float | None]:
  """``"dynamic"`` / ``"learned"`` / ``"fixed:0.3"`` -> (kind, w); UserError naming model.mode otherwise."""
  if mode in ("dynamic", "learned"):
    return mode, None
  if mode.startswith("fixed:"):
    try:
      w = float(mode.split(":", 1)[1])
    except ValueError:
      w = float("nan")
    if not 0.0 <= w <= 1.0:
      raise UserError(f"model.mode={mode!r}: the fixed weight must be a number in [0, 1] (the spatial stream's "
                      f"weight), e.g. 'fixed:0.5'.")
    return "fixed", w
  raise UserError(f"unknown fusion mode {mode!r} (config field model.mode); use 'dynamic', 'learned' or 'fixed:w' "
                  f"with w in [0,1] weighting the spatial stream.")


class SpatioTemporalFusion(nn.Module):
  """Gated fusion of a spatial (time-pooled) and a temporal stream; see the module docstring."""

  num_classes: int = 2
  mode: str = "dynamic"
  temporal: str = "mhsa"
  temporal_kwargs: Mapping[str, Any] = FrozenDict()
  backbone: str = DEFAULT_BACKBONE
  backbone_kwargs: Mapping[str, Any] = FrozenDict()
  combine: str = "logits"
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, mask: jnp.ndarray | None = None
               ) -> tuple[jnp.ndarray, dict]:
    kind, fixed_w = parse_mode(self.mode)
    if not self.num_classes:
      raise UserError("the spatiotemporal fusion model needs model.num_classes >= 1 (it mixes the streams' outputs).")
    if self.combine not in COMBINES:
      raise UserError(f"model.combine must be one of {', '.join(COMBINES)}, got {self.combine!r}.")
    if self.combine == "probs" and self.num_classes < 2:
      raise UserError("model.combine='probs' mixes softmax probabilities and needs num_classes >= 2; use "
                      "combine='logits' for regression or single-logit heads.")
    mask = _check_mask(mask, x)
    feats = frame_features(x, train, self.backbone, self.backbone_kwargs, self.dtype)
    b = feats.shape[0]

    s = masked_mean(feats, mask)
    spatial = nn.Dense(self.num_classes, dtype=self.dtype, name="spatial_head")(
      nn.Dropout(self.dropout, deterministic=not train)(s)).astype(jnp.float32)
    u = make_encoder(self.temporal, self.temporal_kwargs, self.dropout, self.dtype, field="model.temporal",
                     name="temporal")(feats, train, mask)
    temporal = nn.Dense(self.num_classes, dtype=self.dtype, name="temporal_head")(
      nn.Dropout(self.dropout, deterministic=not train)(u)).astype(jnp.float32)
    both = jnp.concatenate([s, u.astype(s.dtype)], axis=-1)

    if kind == "dynamic":
      gate = nn.softmax(nn.Dense(2, dtype=self.dtype, name="gate")(both).astype(jnp.float32), axis=-1)
    else:
      if kind == "learned":
        w = nn.sigmoid(self.param("gate_logit", nn.initializers.zeros, ()))
      else:
        w = jnp.asarray(fixed_w, jnp.float32)
      gate = jnp.broadcast_to(jnp.stack([w, 1.0 - w]), (b, 2)).astype(jnp.float32)

    if self.combine == "logits":
      out = gate[:, 0:1] * spatial + gate[:, 1:2] * temporal
    else:
      probs = gate[:, 0:1] * nn.softmax(spatial, axis=-1) + gate[:, 1:2] * nn.softmax(temporal, axis=-1)
      out = jnp.log(jnp.maximum(probs, 1e-12))
    aux = {"gate": gate, "spatial_logits": spatial, "temporal_logits": temporal,
           "features": both.astype(jnp.float32)}
    return out, aux


def spatiotemporal(**kwargs) -> SpatioTemporalFusion:
  """``get_model("spatiotemporal", mode="dynamic", temporal="mhsa", temporal_kwargs={...}, num_classes=...)``."""
  for k in ("temporal_kwargs", "backbone_kwargs"):
    if k in kwargs:
      kwargs[k] = freeze(dict(kwargs[k] or {}))
  if "mode" in kwargs:
    parse_mode(kwargs["mode"])  # fail at build time, before any tracing, on a bad model.mode
  if "temporal" in kwargs or "temporal_kwargs" in kwargs:
    make_encoder(kwargs.get("temporal", "mhsa"), kwargs.get("temporal_kwargs"), 0.0, jnp.float32,
                 field="model.temporal_kwargs")
  return SpatioTemporalFusion(**kwargs)
