"""Loss functions shared by tasks. All take a ``weight`` per example (0 for padding rows) and return the
weighted mean, so fixed-shape padded batches give the same loss as unpadded ones."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _weighted_mean(values: jax.Array, weight: jax.Array | None) -> jax.Array:
  if weight is None:
    return jnp.mean(values)
  weight = weight.astype(values.dtype)
  return jnp.sum(values * weight) / jnp.maximum(jnp.sum(weight), 1e-8)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, *, weight: jax.Array | None = None,
                          class_weights: jax.Array | None = None, label_smoothing: float = 0.0) -> jax.Array:
  """Mean softmax cross-entropy of integer ``labels`` (B,) against ``logits`` (B, C).

  ``class_weights`` (C,) scale each example by the weight of its true class (normalised by the summed weights,
  as torch's ``CrossEntropyLoss(weight=...)``); ``label_smoothing`` mixes the one-hot target with uniform.
  """
  logits = logits.astype(jnp.float32)
  num_classes = logits.shape[-1]
  onehot = jax.nn.one_hot(labels, num_classes)
  if label_smoothing:
    onehot = onehot * (1.0 - label_smoothing) + label_smoothing / num_classes
  per_example = -jnp.sum(onehot * jax.nn.log_softmax(logits), axis=-1)
  w = jnp.ones_like(per_example) if weight is None else weight.astype(jnp.float32)
  if class_weights is not None:
    w = w * jnp.asarray(class_weights, jnp.float32)[labels]
  return _weighted_mean(per_example, w)


def softmax_focal_loss(logits: jax.Array, labels: jax.Array, *, gamma: float = 2.0, alpha: jax.Array | None = None,
                       weight: jax.Array | None = None) -> jax.Array:
  """Mean multi-class focal loss (Lin et al. 2017, softmax form): ``-alpha_y * (1 - p_y)^gamma * log p_y``.

  ``gamma`` = 0 with no ``alpha`` is cross-entropy. ``alpha`` (C,) multiplies each example by its true class's
  factor, unnormalised as in the paper (unlike ``class_weights`` of :func:`softmax_cross_entropy`). optax's
  ``sigmoid_focal_loss`` is the multi-label (sigmoid) form, so this one is written here.
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32))
  logp_y = jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
  p_y = jnp.exp(logp_y)
  per_example = -jnp.power(jnp.maximum(1.0 - p_y, 0.0), gamma) * logp_y
  if alpha is not None:
    per_example = per_example * jnp.asarray(alpha, jnp.float32)[labels]
  return _weighted_mean(per_example, weight)


def mean_squared_error(pred: jax.Array, target: jax.Array, *, weight: jax.Array | None = None) -> jax.Array:
  """Mean of (pred - target)^2 over examples (pred (B,) or (B,1))."""
  pred = pred.astype(jnp.float32).reshape(target.shape)
  return _weighted_mean(jnp.square(pred - target.astype(jnp.float32)), weight)


def mean_absolute_error(pred: jax.Array, target: jax.Array, *, weight: jax.Array | None = None) -> jax.Array:
  pred = pred.astype(jnp.float32).reshape(target.shape)
  return _weighted_mean(jnp.abs(pred - target.astype(jnp.float32)), weight)


def accuracy(logits: jax.Array, labels: jax.Array, *, weight: jax.Array | None = None) -> jax.Array:
  return _weighted_mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32), weight)
