"""Single convolutions, forward + both gradients: XLA as is, echojax's CPU formulation, and torch, side by side.

    python benchmarks/conv.py [--rounds 5] [--only NAME ...]

Each row is one layer shape of the models the train-step benchmark times (R(2+1)D-18 at 16x112x112, ResNet-18 at
112 px with batch 16, EfficientNet-B2 at 224 px with batch 8). The timed function is ``grad(sum(conv(x, w)**2))``
with respect to input and kernel (forward, input gradient and weight gradient, as in training), jitted:

- **xla**: ``lax.conv_general_dilated`` with XLA's default compiler options;
- **echojax**: ``echojax.models.layers.conv_general_dilated`` under ``layers.jit`` (on the CPU: 3D as 2D
  convolutions, depthwise as shifted slices, YNNPACK off convolutions);
- **torch**: ``torch.nn.functional.conv3d``/``conv2d`` on the same tensors (channels first), backward of the same loss.

Rounds are interleaved (xla, echojax, torch, xla, ...); the table shows the min ms per call and the speed-ups.
This is where ``layers`` was chosen from: a formulation is the default only where it measures faster.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from echojax.errors import UserError, cli_main  # noqa: E402
from echojax.models import layers  # noqa: E402

#: name -> (input shape channels-last, kernel, out channels, strides, groups)
LAYERS = {
  "r2plus1d stem spatial": ((2, 16, 112, 112, 3), (1, 7, 7), 45, (1, 2, 2), 1),
  "r2plus1d stage1 spatial": ((2, 16, 56, 56, 64), (1, 3, 3), 144, (1, 1, 1), 1),
  "r2plus1d stage1 temporal": ((2, 16, 56, 56, 144), (3, 1, 1), 64, (1, 1, 1), 1),
  "r2plus1d stage2 shortcut": ((2, 16, 56, 56, 64), (1, 1, 1), 128, (2, 2, 2), 1),
  "r3d 3x3x3": ((2, 16, 56, 56, 64), (3, 3, 3), 64, (1, 1, 1), 1),
  "x3d depthwise 3x3x3": ((2, 16, 56, 56, 64), (3, 3, 3), 64, (1, 1, 1), 64),
  "resnet18 stem": ((16, 112, 112, 3), (7, 7), 64, (2, 2), 1),
  "resnet18 stage1 3x3": ((16, 28, 28, 64), (3, 3), 64, (1, 1), 1),
  "effnet depthwise 3x3": ((8, 112, 112, 96), (3, 3), 96, (1, 1), 96),
  "effnet depthwise 5x5/2": ((8, 56, 56, 144), (5, 5), 144, (2, 2), 144),
}


def _jax_fn(conv, nd, strides, pads, groups, opts):
  dn = ("NDHWC", "DHWIO", "NDHWC") if nd == 3 else ("NHWC", "HWIO", "NHWC")
  def loss(x, w):
    return jnp.sum(conv(x, w, strides, pads, dimension_numbers=dn, feature_group_count=groups) ** 2)

  return jax.jit(jax.grad(loss, (0, 1)), compiler_options=opts)


def _torch_fn(x, w, strides, pads, groups):
  import torch

  xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))).requires_grad_(True)
  wt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.moveaxis(w, -1, 0), -1, 1))).requires_grad_(True)
  conv = torch.nn.functional.conv3d if x.ndim == 5 else torch.nn.functional.conv2d
  pad = tuple(p[0] for p in pads)

  def step():
    xt.grad = wt.grad = None
    (conv(xt, wt, stride=strides, padding=pad, groups=groups) ** 2).sum().backward()

  return step


def _timed(fn) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


@cli_main
def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--only", nargs="*", help=f"layer names ({'; '.join(LAYERS)})")
  p.add_argument("--no-torch", action="store_true")
  args = p.parse_args(argv)
  names = args.only or list(LAYERS)
  unknown = [n for n in names if n not in LAYERS]
  if unknown:
    raise UserError(f"unknown layer {unknown[0]!r}; use one of: {'; '.join(LAYERS)}")
  if not args.no_torch:
    import torch
    torch.set_num_threads(os.cpu_count())
  print(f"device: {jax.devices()[0].platform}; echojax conv implementation: {layers.conv_impl()}; "
        f"options {layers.compiler_options()}")
  print("| layer | input | kernel / stride / groups | xla ms | echojax ms | torch ms | echojax vs xla | echojax vs torch |")
  print("|---|---|---|---|---|---|---|---|")
  rng = np.random.default_rng(0)
  for name in names:
    shape, kernel, cout, strides, groups = LAYERS[name]
    x = rng.standard_normal(shape, dtype=np.float32)
    w = (rng.standard_normal(kernel + (shape[-1] // groups, cout), dtype=np.float32) * 0.05)
    pads = [((k - 1) // 2, (k - 1) // 2) for k in kernel]
    xj, wj = jnp.asarray(x), jnp.asarray(w)
    fns = {"xla": _jax_fn(lax.conv_general_dilated, len(kernel), strides, pads, groups, None),
           "echojax": _jax_fn(layers.conv_general_dilated, len(kernel), strides, pads, groups,
                              layers.compiler_options())}
    calls = {k: (lambda f=f: jax.block_until_ready(f(xj, wj))) for k, f in fns.items()}
    if not args.no_torch:
      calls["torch"] = _torch_fn(x, w, strides, pads, groups)
    for c in calls.values():
      c()  # compile / warm up
    times = {k: [] for k in calls}
    for _ in range(args.rounds):
      for k, c in calls.items():
        times[k].append(_timed(c))
    best = {k: min(v) * 1e3 for k, v in times.items()}
    tt = best.get("torch")
    ej = best["echojax"]
    print(f"| {name} | {'x'.join(map(str, shape))} | {'x'.join(map(str, kernel))} / {'x'.join(map(str, strides))} / "
          f"{groups} | {best['xla']:.0f} | {best['echojax']:.0f} | {f'{tt:.0f}' if tt else '-'} | "
          f"{best['xla'] / ej:.1f}x | {f'{tt / ej:.2f}x' if tt else '-'} |", flush=True)


if __name__ == "__main__":
  main()
