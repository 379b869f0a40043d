"""echojax.models.layers: the CPU formulations of convolution and max-pool equal XLA's own, values and gradients."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from echojax.models import layers

# (input shape, kernel, in channels per group, out channels, strides, padding, kernel dilation, groups)
CONVS = [
  ((2, 8, 12, 12, 6), (1, 3, 3), 6, 5, (1, 1, 1), "SAME", None, 1),  # R(2+1)D spatial
  ((2, 8, 12, 12, 6), (3, 1, 1), 6, 5, (2, 1, 1), ((1, 1), (0, 0), (0, 0)), None, 1),  # R(2+1)D temporal, strided
  ((2, 9, 12, 12, 6), (3, 1, 1), 6, 5, (1, 1, 1), "SAME", (2, 1, 1), 1),  # dilated in time
  ((2, 8, 12, 12, 6), (3, 3, 3), 6, 5, (1, 2, 2), "SAME", None, 1),  # R3D / conv3d
  ((2, 8, 12, 12, 6), (1, 1, 1), 6, 5, (2, 2, 2), "VALID", None, 1),  # downsample shortcut
  ((2, 8, 11, 11, 6), (3, 7, 7), 6, 5, (1, 2, 2), ((1, 1), (3, 3), (3, 3)), None, 1),  # R3D stem
  ((2, 8, 12, 12, 6), (2, 4, 4), 6, 5, (2, 4, 4), "VALID", None, 1),  # ViViT tubelets
  ((2, 8, 12, 12, 6), (3, 3, 3), 3, 4, (1, 1, 1), "SAME", None, 2),  # grouped (not depthwise)
  ((2, 8, 12, 12, 6), (3, 3, 3), 1, 6, (1, 2, 2), "SAME", None, 6),  # X3D depthwise
  ((2, 13, 13, 6), (3, 3), 1, 6, (2, 2), "SAME", None, 6),  # EfficientNet depthwise, strided
  ((2, 13, 13, 6), (5, 5), 1, 6, (1, 1), ((2, 2), (2, 2)), (2, 2), 6),
  ((2, 16, 6), (3,), 1, 6, (1,), "SAME", None, 6),
  ((2, 13, 13, 6), (3, 3), 6, 7, (2, 2), "SAME", None, 1),  # plain 2D: XLA's own
  ((2, 16, 6), (5,), 6, 4, (1,), ((4, 4),), (2,), 1),  # dilated TCN
]


@pytest.fixture(autouse=True)
def _formulations_at_every_size(monkeypatch):
  """These tests check the CPU formulations on small shapes, which ECHOJAX_CONV=auto leaves to XLA."""
  monkeypatch.setenv("ECHOJAX_CONV", "cpu")


def _conv_pair(xs, k, ci, co, s, p, d, g):
  nd = len(k)
  sp = "DHW"[-nd:]
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(xs, dtype=np.float32))
  w = jnp.asarray(rng.standard_normal(k + (ci, co), dtype=np.float32))
  dn = lax.conv_dimension_numbers(xs, w.shape, (f"N{sp}C", f"{sp}IO", f"N{sp}C"))
  kw = dict(rhs_dilation=d, dimension_numbers=dn, feature_group_count=g)
  return x, w, (lambda x, w: lax.conv_general_dilated(x, w, s, p, **kw)), (
      lambda x, w: layers.conv_general_dilated(x, w, s, p, **kw))


@pytest.mark.parametrize("case", CONVS, ids=lambda c: f"{c[0]}-{c[1]}-s{c[4]}-g{c[7]}")
def test_conv_equals_xla_values_and_gradients(case):
  assert layers.conv_impl() == "cpu"
  x, w, ref, new = _conv_pair(*case)
  y0, y1 = ref(x, w), new(x, w)
  assert y0.shape == y1.shape
  loss = lambda f: (lambda x, w: jnp.sum(jnp.sin(f(x, w))))
  g0 = jax.grad(loss(ref), (0, 1))(x, w)
  g1 = jax.jit(jax.grad(loss(new), (0, 1)), compiler_options=layers.compiler_options())(x, w)
  for a, b in [(y0, y1), *zip(g0, g1)]:
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=2e-5 * float(jnp.abs(a).max()))


POOLS = [((2, 9, 9, 3), (3, 3), (2, 2), ((1, 1), (1, 1))), ((2, 8, 8, 3), (3, 3), (2, 2), ((1, 1), (1, 1))),
         ((2, 4, 6, 6, 3), (2, 2, 2), (2, 2, 2), "SAME"), ((2, 5, 7, 7, 3), (1, 2, 2), (1, 2, 2), "SAME"),
         ((2, 7, 3), (3,), (1,), "VALID")]


@pytest.mark.parametrize("shape,window,strides,padding", POOLS)
def test_max_pool_equals_flax_and_sends_ties_to_the_first_maximum(shape, window, strides, padding):
  rng = np.random.default_rng(1)
  # after a ReLU most windows hold ties (zeros); rounding makes ties among positive values too
  x = jnp.asarray(np.maximum(rng.standard_normal(shape), 0).round(1).astype(np.float32))
  ref = lambda x: nn.max_pool(x, window, strides=strides, padding=padding)
  new = lambda x: layers.max_pool(x, window, strides, padding)
  assert np.array_equal(ref(x), new(x))
  ct = jnp.asarray(rng.standard_normal(ref(x).shape).astype(np.float32))
  g0, g1 = jax.vjp(ref, x)[1](ct)[0], jax.vjp(new, x)[1](ct)[0]
  np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=0, atol=1e-6)
  assert float(jnp.sum(g1)) == pytest.approx(float(jnp.sum(ct)), rel=1e-5)  # each window's gradient lands once


def _ynn_ops(hlo: str) -> set[str]:
  """The HLO opcodes inside the computations that YNNPACK fusions call."""
  import re

  called = set(re.findall(r"calls=(%[\w.\-]+)[^\n]*__ynn_fusion", hlo))
  ops, current = set(), None
  for line in hlo.splitlines():
    head = re.match(r"(%[\w.\-]+) \(.*\{$", line)
    if head:
      current = head.group(1)
    elif line.startswith("}"):
      current = None
    elif current in called:
      ops.update(re.findall(r"= \S+ ([a-z\-]+)\(", line))
  return ops


def test_cpu_compiler_options_keep_ynnpack_off_convolutions_only():
  """The pinned jaxlib accepts the option; with it, 2D convolutions and their weight gradients are XLA's own (not
  YNNPACK fusions). YNNPACK still takes reductions, and a convolution XLA fuses into one."""
  x = jnp.ones((8, 28, 28, 64))
  w = jnp.ones((3, 3, 64, 64))

  def f(x, w):  # a convolution and its weight gradient
    conv = lambda w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y, vjp = jax.vjp(conv, w)
    return y, vjp(y)[0]

  default = _ynn_ops(jax.jit(f).lower(x, w).compile().as_text())
  ours = _ynn_ops(jax.jit(f, compiler_options=layers.compiler_options()).lower(x, w).compile().as_text())
  assert "convolution" in default  # what the option is for: XLA's default gives YNNPACK the convolution
  assert "convolution" not in ours


def test_echojax_conv_xla_turns_the_rewrites_off(monkeypatch):
  monkeypatch.setenv("ECHOJAX_CONV", "xla")
  assert layers.conv_impl() == "xla" and layers.compiler_options() is None
  x, w, ref, new = _conv_pair(*CONVS[0])
  assert jax.make_jaxpr(new)(x, w).eqns[0].primitive.name == "conv_general_dilated"
  assert len(jax.make_jaxpr(new)(x, w).eqns) == 1  # lax.conv_general_dilated as is
  monkeypatch.setenv("ECHOJAX_CONV", "auto")  # small convolutions stay XLA's under the default
  assert layers.conv_impl() == "cpu" and len(jax.make_jaxpr(new)(x, w).eqns) == 1
  big = jnp.zeros((2, 16, 56, 56, 64))
  assert len(jax.make_jaxpr(new)(big, jnp.zeros((1, 3, 3, 64, 64))).eqns) > 1  # large ones are rewritten
  monkeypatch.setenv("ECHOJAX_CONV", "fast")
  with pytest.raises(ValueError, match="ECHOJAX_CONV='fast'"):
    layers.conv_impl()
