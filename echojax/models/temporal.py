"""Temporal models over per-frame features, and full-video wrappers around a shared per-frame backbone.

Registered names (all take a video (B, T, H, W, C), return ``(logits float32 (B, num_classes), aux)`` and accept an
optional frame mask ``mask`` (B, T) bool, False = padded frame):

- ``"cnn_lstm"``: per-frame CNN -> LSTM (``nn.RNN`` + ``OptimizedLSTMCell``, ``num_layers`` stacked) -> final hidden
  state of the last *valid* frame -> head. The mask is turned into sequence lengths, so padded frames must come
  after the valid ones (the pipeline pads at the end).
- ``"tcn"``: per-frame CNN -> Dense(width) -> residual blocks of dilated 1D convs (dilations 1, 2, 4, 8 by default;
  LayerNorm -> conv -> GELU -> dropout) -> masked mean over time -> head. Padded positions are set to zero before
  every convolution, which is exactly the convolution's own zero padding, so a clip padded at the end gives the
  same result as the unpadded clip.
- ``"mhsa"``: per-frame CNN -> Dense(width) -> class token + learned position embedding -> pre-LN transformer
  encoder whose attention ignores padded frames -> class token (``pool="tok"``) or masked mean (``"gap"``) -> head.
- ``"conv3d"``: a small C3D-like 3D CNN straight on pixels: blocks of Conv3D(3x3x3) -> BN -> ReLU -> max-pool
  (spatial 2x2 every block, temporal 2 where ``temporal_strides`` says), global masked average -> head. Padded frames
  are zeroed before every conv; they can still enter BatchNorm batch statistics in training.

The per-frame backbone is chosen by ``backbone`` (any registered image model that returns pooled features with
``num_classes=0``: ``"efficientnet_b2"`` by default, ``"resnet18"`` .. ``"resnet152"``) and ``backbone_kwargs``
(e.g. ``{"width_mult": 0.25, "depth_mult": 0.25}`` for a tiny EfficientNet). All T frames of all clips go through
the backbone as one (B*T, H, W, C) batch. Passing already-computed features (B, T, D) instead of a video skips the
backbone. Every temporal encoder (``TEMPORAL_ENCODERS``) maps (B, T, D) + mask to a pooled (B, D') vector, which
``echojax.models.spatiotemporal`` reuses for its temporal stream. aux always holds ``features`` (the pooled vector); the
wrappers add ``frame_features`` (B, T, D).

Extra keyword arguments to ``get_model("cnn_lstm"|"tcn"|"mhsa", ...)`` go to the encoder (e.g. ``hidden_size=``,
``width=``, ``depth=``); unknown names raise a UserError listing the valid ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import einops
import flax.linen as nn
import jax.numpy as jnp
from flax.core import FrozenDict, freeze

from echojax.models import layers
from echojax.errors import UserError
from echojax.models.registry import get_model
from echojax.models.vit import Encoder, masked_mean

DEFAULT_BACKBONE = "efficientnet_b2"


def _check_mask(mask: jnp.ndarray | None, x: jnp.ndarray) -> jnp.ndarray | None:
  """Validates a (B, T) frame mask against x (B, T, ...); returns it as bool."""
  if mask is None:
    return None
  if mask.shape != x.shape[:2]:
    raise UserError(f"frame mask has shape {mask.shape} but the clip batch starts with {x.shape[:2]}; "
                    f"mask must be (batch, frames) as produced by the pipeline's 'mask' key.")
  return mask.astype(bool)


def _zero_padded(x: jnp.ndarray, mask: jnp.ndarray | None) -> jnp.ndarray:
  """Sets padded time steps of (B, T, ...) to exactly zero (``where``, so NaN/inf in padding cannot leak)."""
  if mask is None:
    return x
  m = mask.reshape(mask.shape + (1,) * (x.ndim - 2))
  return jnp.where(m, x, jnp.zeros((), x.dtype))


class FrameBackbone(nn.Module):
  """Runs a registered image model (``num_classes=0``) on every frame: (B, T, H, W, C) -> (B, T, D)."""

  model_name: str = DEFAULT_BACKBONE
  kwargs: Mapping[str, Any] = FrozenDict()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    if x.ndim != 5:
      raise UserError(f"expected a video batch (B,T,H,W,C) or frame features (B,T,D), got shape {x.shape}.")
    kw = dict(self.kwargs)
    kw.setdefault("dtype", self.dtype)
    # Built detached (parent=None) and adopted under a fixed name, since get_model's first argument is "name".
    net = get_model(self.model_name, num_classes=0, parent=None, **kw).clone(parent=self, name="net")
    feats, _ = net(einops.rearrange(x, "b t h w c -> (b t) h w c"), train=train)
    if feats.ndim != 2:
      raise UserError(f"backbone {self.model_name!r} returned features of shape {feats.shape}; a per-frame backbone "
                      f"must return pooled (N, D) features with num_classes=0 (config field model.backbone).")
    return einops.rearrange(feats, "(b t) d -> b t d", b=x.shape[0])


class LSTMEncoder(nn.Module):
  """Stacked LSTM over (B, T, D); returns the last layer's hidden state at each clip's last valid frame."""

  hidden_size: int = 256
  num_layers: int = 1
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool, mask: jnp.ndarray | None = None) -> jnp.ndarray:
    lengths = None if mask is None else jnp.sum(mask, axis=1).astype(jnp.int32)
    x = _zero_padded(x, mask)
    h = None
    for i in range(self.num_layers):
      if i:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
      cell = nn.OptimizedLSTMCell(self.hidden_size, dtype=self.dtype, name=f"lstm_{i}")
      (_, h), x = nn.RNN(cell, return_carry=True, name=f"rnn_{i}")(x, seq_lengths=lengths)
    return h


class TCNEncoder(nn.Module):
  """Residual dilated temporal CNN over (B, T, D); masked mean over valid frames."""

  width: int = 128
  dilations: tuple[int, ...] = (1, 2, 4, 8)
  kernel_size: int = 3
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool, mask: jnp.ndarray | None = None) -> jnp.ndarray:
    if self.kernel_size % 2 != 1:
      raise UserError(f"model.kernel_size must be odd for a centred temporal conv, got {self.kernel_size}.")
    x = nn.Dense(self.width, dtype=self.dtype, name="proj")(_zero_padded(x, mask))
    for i, d in enumerate(self.dilations):
      y = nn.LayerNorm(dtype=self.dtype, name=f"ln_{i}")(x)
      y = _zero_padded(y, mask)
      pad = d * (self.kernel_size - 1) // 2
      y = layers.Conv(self.width, (self.kernel_size,), kernel_dilation=(d,), padding=((pad, pad),), dtype=self.dtype,
                  name=f"conv_{i}")(y)
      y = nn.gelu(y, approximate=False)
      y = nn.Dropout(self.dropout, deterministic=not train)(y)
      x = x + y
    x = nn.LayerNorm(dtype=self.dtype, name="ln_out")(x)
    return masked_mean(x, mask)


class AttentionEncoder(nn.Module):
  """Transformer encoder over frame features (B, T, D): Dense(width) + [cls] + position embedding + ``depth`` blocks.

  ``max_len`` is the longest clip (the position table has ``max_len`` (+1 for cls) rows; shorter clips use the
  first rows), so one set of weights serves any T <= max_len.
  """

  width: int = 128
  depth: int = 2
  num_heads: int = 4
  mlp_dim: int = 256
  max_len: int = 128
  pool: str = "tok"
  dropout: float = 0.0
  attention_dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool, mask: jnp.ndarray | None = None) -> jnp.ndarray:
    b, t, _ = x.shape
    if t > self.max_len:
      raise UserError(f"clip has {t} frames but the attention model's model.max_len is {self.max_len}; raise "
                      f"model.max_len or lower data.num_frames.")
    if self.pool not in ("tok", "gap"):
      raise UserError(f"model.pool must be 'tok' or 'gap', got {self.pool!r}.")
    # Zero padded frames first: attention gives them weight 0, but 0 * NaN would still be NaN.
    x = nn.Dense(self.width, dtype=self.dtype, name="proj")(_zero_padded(x, mask))
    use_cls = self.pool == "tok"
    n_pos = self.max_len + int(use_cls)
    pos = self.param("pos_embedding", nn.initializers.normal(stddev=0.02), (1, n_pos, self.width))
    if use_cls:
      cls = self.param("cls", nn.initializers.zeros, (1, 1, self.width))
      x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.width)).astype(x.dtype), x], axis=1)
      if mask is not None:
        mask = jnp.concatenate([jnp.ones((b, 1), bool), mask], axis=1)
    x = x + pos[:, : x.shape[1]].astype(x.dtype)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = Encoder(self.depth, self.num_heads, self.mlp_dim, self.dropout, self.attention_dropout, self.dtype,
                name="encoder")(x, train, mask)
    return x[:, 0] if use_cls else masked_mean(x, mask)


TEMPORAL_ENCODERS: dict[str, type[nn.Module]] = {
  "cnn_lstm": LSTMEncoder,
  "tcn": TCNEncoder,
  "mhsa": AttentionEncoder,
}


def make_encoder(kind: str, kwargs: Mapping[str, Any] | None, dropout: float, dtype: Any,
                 field: str = "model", name: str | None = None) -> nn.Module:
  """Builds the temporal encoder ``kind`` from keyword arguments, with a UserError for unknown kinds / names."""
  if kind not in TEMPORAL_ENCODERS:
    raise UserError(f"unknown temporal model {kind!r} ({field}); use one of {', '.join(TEMPORAL_ENCODERS)}.")
  cls = TEMPORAL_ENCODERS[kind]
  valid = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
  kw = dict(kwargs or {})
  bad = sorted(set(kw) - valid)
  if bad:
    raise UserError(f"unknown option(s) {', '.join(bad)} for the {kind!r} temporal model ({field}); valid: "
                    f"{', '.join(sorted(valid))}.")
  kw.setdefault("dropout", dropout)
  kw.setdefault("dtype", dtype)
  if "dilations" in kw:
    kw["dilations"] = tuple(kw["dilations"])
  return cls(name=name, **kw)


def frame_features(x: jnp.ndarray, train: bool, backbone: str, backbone_kwargs: Mapping[str, Any], dtype: Any,
                   name: str = "backbone") -> jnp.ndarray:
  """Inside a compact module: (B,T,H,W,C) -> backbone -> (B,T,D); (B,T,D) features pass through unchanged."""
  if x.ndim == 3:
    return x.astype(dtype)
  return FrameBackbone(backbone, freeze(dict(backbone_kwargs or {})), dtype, name=name)(x, train)


class FrameTemporalModel(nn.Module):
  """Video -> shared per-frame backbone -> temporal encoder ``kind`` -> dropout -> Dense head."""

  kind: str = "mhsa"
  num_classes: int | None = 2
  backbone: str = DEFAULT_BACKBONE
  backbone_kwargs: Mapping[str, Any] = FrozenDict()
  encoder_kwargs: Mapping[str, Any] = FrozenDict()
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, mask: jnp.ndarray | None = None
               ) -> tuple[jnp.ndarray, dict]:
    mask = _check_mask(mask, x)
    feats = frame_features(x, train, self.backbone, self.backbone_kwargs, self.dtype)
    pooled = make_encoder(self.kind, self.encoder_kwargs, self.dropout, self.dtype, name="temporal")(
      feats, train, mask)
    aux = {"features": pooled.astype(jnp.float32), "frame_features": feats.astype(jnp.float32)}
    if not self.num_classes:
      return pooled.astype(jnp.float32), aux
    y = nn.Dropout(self.dropout, deterministic=not train)(pooled)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(y).astype(jnp.float32), aux


_WRAPPER_FIELDS = ("num_classes", "backbone", "backbone_kwargs", "dropout", "dtype", "name", "parent")


def frame_temporal_model(kind: str, **kwargs) -> FrameTemporalModel:
  """Per-frame backbone + ``kind`` temporal encoder + head (``get_model("cnn_lstm"|"tcn"|"mhsa", ...)``): the
  wrapper's own fields go to :class:`FrameTemporalModel`, every other argument to the encoder."""
  top = {k: kwargs.pop(k) for k in _WRAPPER_FIELDS if k in kwargs}
  if "backbone_kwargs" in top:
    top["backbone_kwargs"] = freeze(dict(top["backbone_kwargs"] or {}))
  make_encoder(kind, kwargs, 0.0, jnp.float32)  # validate option names early, with a clear message
  return FrameTemporalModel(kind=kind, encoder_kwargs=freeze(kwargs), **top)


class Conv3DNet(nn.Module):
  """Small C3D-like 3D CNN: (B, T, H, W, C) -> (logits, {"features": pooled}).

  ``widths``: channels per block; ``temporal_strides``: temporal max-pool stride per block (1 or 2; spatial is
  always 2). Pools use "SAME" padding so short clips and odd sizes never shrink to zero.
  """

  num_classes: int | None = 2
  widths: tuple[int, ...] = (64, 128, 256, 256)
  temporal_strides: tuple[int, ...] = (1, 2, 2, 2)
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, mask: jnp.ndarray | None = None
               ) -> tuple[jnp.ndarray, dict]:
    if x.ndim != 5:
      raise UserError(f"conv3d expects videos (B,T,H,W,C), got shape {x.shape}.")
    if len(self.widths) != len(self.temporal_strides):
      raise UserError(f"model.widths {tuple(self.widths)} and model.temporal_strides "
                      f"{tuple(self.temporal_strides)} must have the same length.")
    mask = _check_mask(mask, x)
    x = x.astype(self.dtype)
    for i, (w, ts) in enumerate(zip(self.widths, self.temporal_strides)):
      x = _zero_padded(x, mask)
      x = layers.Conv(w, (3, 3, 3), padding=((1, 1),) * 3, use_bias=False, dtype=self.dtype,
                  kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"), name=f"conv_{i}")(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                       name=f"bn_{i}")(x)
      x = nn.relu(x)
      # After ReLU values are >= 0, so zeroed padded frames never win a max-pool against a valid frame.
      x = _zero_padded(x, mask)
      x = layers.max_pool(x, (ts, 2, 2), (ts, 2, 2), "SAME")
      if mask is not None and ts > 1:
        m = nn.max_pool(mask.astype(jnp.float32)[..., None], (ts,), strides=(ts,), padding="SAME")[..., 0]
        mask = m > 0
    x = jnp.mean(x, axis=(2, 3))  # (B, T', C)
    pooled = masked_mean(x, mask)
    aux = {"features": pooled.astype(jnp.float32)}
    if not self.num_classes:
      return pooled.astype(jnp.float32), aux
    y = nn.Dropout(self.dropout, deterministic=not train)(pooled)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(y).astype(jnp.float32), aux


def conv3d(**kwargs) -> Conv3DNet:
  """``get_model("conv3d", widths=(8, 16), temporal_strides=(1, 2), num_classes=...)``."""
  for k in ("widths", "temporal_strides"):
    if k in kwargs:
      kwargs[k] = tuple(kwargs[k])
  return Conv3DNet(**kwargs)
