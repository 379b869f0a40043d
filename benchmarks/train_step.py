"""Train-step speed: echojax's train step beside its PyTorch mirror (echoforge), same batch, same device.

    python benchmarks/train_step.py                                  # the README table (every case below)
    python benchmarks/train_step.py r2plus1d_18 resnet18 --rounds 7  # some cases
    python benchmarks/train_step.py --config ef_classification:demo  # a named config (its model, batch, clip)
    python benchmarks/train_step.py resnet18 --dtype bfloat16        # bf16 compute, fp32 master weights
    python benchmarks/train_step.py --compile-only                   # compile time of every case only

For each case the **echojax step** is the trainer's own ``echojax.train.make_train_step`` (model, task loss,
optax optimizer, batch stats, metrics), jitted with the trainer's donation; the **torch step** is the echoforge
mirror of the same architecture holding the same initial weights (converted by the export's name map), in train
mode, with the same loss and optimizer (SGD momentum 0.9, weight decay 1e-4, or the config's), on the same batch
(channels-first); a ResNet's ``frozen_stages`` (EchoSDNet trains conv5 + head) are frozen on the torch side too. Rounds are strictly interleaved (one JAX step, one torch step, ...) after one untimed warm-up
step each, so load changes on a shared machine hit both sides alike. Printed per case: min and median seconds per
step, JAX steps/s, **JAX/torch** (torch median / JAX median: above 1 means echojax is faster), the step's FLOPs
from XLA's cost analysis, the achieved FLOP/s and its fraction of this device's **measured** matmul peak (a jitted
square matmul, timed first), the **MFU** against the vendor's dense bf16 peak when the device is a known
accelerator, and the JAX **compile** time (lowering + XLA compilation, no persistent cache).

It runs unchanged on a GPU or TPU. The torch step runs on the GPU when JAX does and torch sees CUDA (this
project pins a CPU torch: install a CUDA build there for the comparison), else on the CPU; ``--no-torch`` skips it. XLA flags, e.g. ``XLA_FLAGS=--xla_cpu_...``, apply as usual; the device-specific defaults echojax chooses (see
``echojax.models.layers``) are reported in the header.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from echojax.errors import UserError, cli_main  # noqa: E402

#: name -> (architecture, constructor kwargs, batch, frames (0 = image), frame size). The README table's rows.
CASES: dict[str, tuple[str, dict, int, int, int]] = {
  "r2plus1d_18": ("r2plus1d_18", {}, 2, 16, 112),  # the EF model (echonet_ef)
  "r2plus1d_18_t32": ("r2plus1d_18", {}, 2, 32, 112),
  "resnet18": ("resnet18", {}, 16, 0, 112),
  "resnet50": ("resnet50", {}, 8, 0, 224),
  "efficientnet_b2": ("efficientnet_b2", {}, 8, 0, 224),  # view_image_effnetb2
  "video_vit": ("video_vit", {"variant": "S/16x2", "attention": "factorised", "dropout": 0.1}, 4, 16, 112),  # the video_vit recipe's ViT-S/16x2
  "echosdnet": ("echosdnet", {}, 8, 0, 224),  # its ResNet50 backbone + head, Keras layout
}

#: dense bf16 peak FLOP/s per accelerator (vendor data sheets), for MFU; matched against jax's device_kind.
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "TPU v4": 275e12, "TPU v5 lite": 197e12,
             "TPU v5p": 459e12, "TPU v5": 459e12, "TPU v6": 918e12}


def matmul_peak(dtype, n: int = 2048, repeats: int = 5) -> float:
  """Measured FLOP/s of a jitted n x n matmul on the default device (best of ``repeats``)."""
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda a, b: a @ b)
  f(a, a).block_until_ready()
  best = min(_timed(lambda: f(a, a).block_until_ready()) for _ in range(repeats))
  return 2 * n ** 3 / best


def _timed(fn) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def case_config(arch: str, kwargs: dict, batch: int, frames: int, size: int, dtype: str):
  """A complete run config for one case: classification into 2 classes, SGD as the EF recipes."""
  from echojax import schema
  from echoforge import archs

  video = archs.get(arch).video
  cfg = {"task": {"kind": "classification", "num_classes": 2},
         "model": {"name": arch, "kwargs": dict(kwargs)},
         "data": {"batch_size": batch, "frames": max(frames, 1), "size": size,
                  "input_key": "video" if video else "image"},
         "optim": {"name": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4},
         "train": {"num_steps": 1000}}
  if dtype != "float32":
    cfg["model"]["dtype"] = dtype
  return schema.complete(cfg)


def named_config(spec: str, overrides: list[str], dtype: str):
  """``--config NAME[:ARG]`` with overrides: its model, batch, clip length and frame size."""
  from echojax.config import load_config

  over = list(overrides) + ([f"model.dtype={dtype}"] if dtype != "float32" else [])
  return load_config(spec, over)


def config_size(cfg) -> int:
  """The frame size a config trains on: ``data.size``, else the stored size its builder config names (``"112"``,
  ``"images_224"``), else the architecture's default input size."""
  from echoforge import archs

  if cfg.data.size:
    return int(cfg.data.size)
  digits = re.findall(r"\d+", str(cfg.data.get("builder_config") or ""))
  return int(digits[-1]) if digits else archs.get(cfg.model.name).input_size


class Case:
  """Both steps of one configuration, built once, timed in interleaved rounds."""

  def __init__(self, name: str, config, size: int, torch_side: bool, threads: int):
    from echojax import tasks
    from echojax.models import layers
    from echojax.optim import make_optimizer
    from echojax.run import build_model
    from echojax.train import make_init_fn, make_train_step
    from echoforge import archs

    self.name, self.config = name, config
    arch = config.model.name
    self.arch, self.video = arch, archs.get(arch).video
    b, t = int(config.data.batch_size), int(config.data.frames)
    self.shape = (b, t, size, size, 3) if self.video else (b, size, size, 3)
    rng = np.random.default_rng(0)
    x = rng.random(self.shape, dtype=np.float32)
    task = tasks.get_task(config)
    self.classes = task.num_outputs if task.num_outputs > 1 else 0  # 0: a regression (EF)
    targets = {k: (rng.uniform(20, 75, b).astype(np.float32) if k == "ef" or not self.classes
                   else rng.integers(0, self.classes, b).astype(np.int32)) for k in task.target_keys}
    if task.needs_train_targets():
      task.prepare({k: np.tile(v, 4) for k, v in targets.items()})
    self.batch = {config.data.input_key: jnp.asarray(x), **{k: jnp.asarray(v) for k, v in targets.items()},
                  "valid": jnp.ones(b, bool), **({"mask": jnp.ones((b, t), bool)} if self.video else {})}
    labels = rng.integers(0, self.classes, b).astype(np.int32) if self.classes else next(iter(targets.values()))
    model = build_model(config, task)
    tx, schedule = make_optimizer(config.optim, 100, int(config.train.num_steps))
    init = make_init_fn(model, tx, task, jax.ShapeDtypeStruct(self.shape, jnp.float32), int(config.seed))
    self.state = jax.jit(init)()
    variables = jax.device_get({k: self.state[k] for k in ("params", "batch_stats")})
    step = layers.jit(make_train_step(model, tx, task, config, schedule), donate_argnums=(0,))
    t0 = time.perf_counter()
    lowered = step.lower(self.state, self.batch)
    self.step = lowered.compile()
    self.compile_s = time.perf_counter() - t0
    cost = self.step.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    self.flops = float((cost or {}).get("flops", float("nan")))
    frozen = int(getattr(model, "frozen_stages", -1))  # ResNet family: stem + stages 1..k get no gradient
    self.torch = self._torch_step(variables, x, labels, threads, frozen) if torch_side else None

  def _torch_step(self, variables, x, labels, threads: int, frozen: int):
    import torch

    from echojax.export import to_module, torch_kwargs_for

    torch.set_num_threads(threads)
    model_kwargs = {k: v for k, v in dict(self.config.model.kwargs).items() if k != "dtype"}
    spec = {"size": list(self.shape[-3:-1]), "frames": self.shape[1] if self.video else 0}
    module = to_module(variables, self.arch, {**model_kwargs, "num_classes": self.classes or 1},
                       torch_kwargs_for(self.arch, spec))
    device = "cuda" if torch.cuda.is_available() and jax.default_backend() == "gpu" else "cpu"
    module.to(device).train()
    if frozen >= 0:  # as the JAX ResNet's frozen_stages: no gradients and running-stat batch norm there
      pattern = re.compile(r"(^|\.)(" + "|".join(["stem_"] + [f"stage{i}_" for i in range(1, frozen + 1)]) + ")")
      for name, sub in module.named_modules():
        if pattern.search(name):
          sub.eval()
          for p in sub.parameters(recurse=False):
            p.requires_grad_(False)
    o = self.config.optim
    if o.name == "sgd":
      opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=float(o.lr), momentum=float(o.momentum),
                            weight_decay=float(o.weight_decay))
    else:
      opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=float(o.lr), weight_decay=float(o.weight_decay))
    xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))).to(device)
    yt = torch.from_numpy(labels.astype(np.int64) if self.classes else labels).to(device)
    loss_fn = torch.nn.functional.cross_entropy if self.classes else (
        lambda out, y: torch.nn.functional.mse_loss(out[:, 0], y))

    def step():
      opt.zero_grad(set_to_none=True)
      out = module(xt)
      out = out[0] if isinstance(out, tuple) else out
      if out.ndim == 3:  # per-frame logits: the clip mean, as echojax.run.pool_outputs
        out = out.mean(1)
      loss = loss_fn(out, yt)
      loss.backward()
      opt.step()
      return loss.item()  # waits for the device

    return step

  def jax_step(self) -> None:
    self.state, m = self.step(self.state, self.batch)
    jax.block_until_ready(m["loss"])


def run_case(case: Case, rounds: int) -> dict:
  case.jax_step()  # warm-up (first-call allocation, thread pools)
  if case.torch:
    case.torch()
  tj, tt = [], []
  for _ in range(rounds):
    tj.append(_timed(case.jax_step))
    if case.torch:
      tt.append(_timed(case.torch))
  return {"jax": tj, "torch": tt}


def _fmt_s(ts) -> str:
  return f"{min(ts):.3f} / {statistics.median(ts):.3f}" if ts else "-"


def table(rows: list[dict], peak: float, mfu_peak: float | None) -> str:
  head = ["case", "input (B, T, H, W, C)", "echojax s/step min / med", "torch s/step min / med", "echojax steps/s",
          "JAX / torch", "GFLOP/step", "GFLOP/s", "% of matmul peak", *(["MFU"] if mfu_peak else []),
          "compile s"]
  out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    tj, tt = r["times"]["jax"], r["times"]["torch"]
    med = statistics.median(tj) if tj else float("nan")
    rate = r["flops"] / med if tj else float("nan")
    cells = [r["name"], "x".join(map(str, r["shape"])), _fmt_s(tj), _fmt_s(tt),
             f"{1 / med:.2f}" if tj else "-",
             f"{statistics.median(tt) / med:.2f}x" if tt and tj else "-",
             f"{r['flops'] / 1e9:.1f}", f"{rate / 1e9:.0f}" if tj else "-",
             f"{100 * rate / peak:.0f}%" if tj else "-",
             *([f"{100 * rate / mfu_peak:.1f}%" if tj else "-"] if mfu_peak else []),
             f"{r['compile_s']:.1f}"]
    out.append("| " + " | ".join(cells) + " |")
  return "\n".join(out)


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("cases", nargs="*", help=f"case names ({', '.join(CASES)}) or architecture names "
                                          "(echoforge.archs); default: every case")
  p.add_argument("--config", nargs="+", help="named configs NAME[:ARG] instead of cases (their model, batch, clip "
                                            "and frame size); 'all' = every experiments/ config at full size")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides for --config")
  p.add_argument("--batch", type=int, help="batch size (overrides the case's)")
  p.add_argument("--frames", type=int, help="clip length of video cases")
  p.add_argument("--size", type=int, help="frame size (default: the case's, or the config's data.size, or 112/224)")
  p.add_argument("--rounds", type=int, default=5, help="timed interleaved rounds (default 5)")
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                 help="compute dtype of the echojax model (params stay float32); torch stays float32")
  p.add_argument("--no-torch", action="store_true", help="time the echojax step only")
  p.add_argument("--compile-only", action="store_true", help="build and compile only (the compile-time column)")
  p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads (default: all cores)")
  p.add_argument("--json", help="also write the raw times and numbers to this file")
  return p.parse_args(argv)


@cli_main
def main(argv=None) -> None:
  from echoforge import archs
  from echojax.models import layers

  args = parse_args(argv)
  dev = jax.devices()[0]
  dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
  peak = matmul_peak(dtype)
  mfu_peak = next((v for k, v in BF16_PEAK.items() if k.lower() in dev.device_kind.lower()), None)
  print(f"device: {dev.platform} {dev.device_kind} x{jax.device_count()}; jax {jax.__version__}; "
        f"compute {args.dtype}; measured {args.dtype} matmul peak {peak / 1e9:.0f} GFLOP/s; "
        f"conv implementation: {layers.conv_impl()}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}", flush=True)
  specs = []
  if args.config:
    from echojax.config import list_configs
    for spec in (list_configs() if args.config == ["all"] else args.config):
      cfg = named_config(spec, args.set, args.dtype)
      if cfg.model.name not in archs.ARCHS and not (args.no_torch or args.compile_only):
        raise UserError(f"--config {spec}: model {cfg.model.name!r} has no echoforge mirror; use --no-torch")
      size = args.size or config_size(cfg)
      with cfg.unlocked():
        if args.batch:
          cfg.data.batch_size = args.batch
        if args.frames:
          cfg.data.frames = args.frames
        if not cfg.data.norm_stats:  # device-side normalisation needs the train split's stats: stand-ins, no data
          cfg.data.norm_stats = {"mean": [127.5] * 3, "std": [64.0] * 3, "stored_size": size}
      specs.append((spec, cfg, size))
  else:
    for name in args.cases or list(CASES):
      if name in CASES:
        arch, kw, b, t, s = CASES[name]
      elif name in archs.ARCHS:
        arch, kw, b, t, s = name, {}, 8, 16 if archs.get(name).video else 0, archs.get(name).input_size
      else:
        raise UserError(f"unknown case {name!r}; use one of {', '.join(CASES)} or an architecture name")
      b, t, s = args.batch or b, (args.frames or t) if t else 0, args.size or s
      specs.append((name, case_config(arch, kw, b, t, s, args.dtype), s))
  rows = []
  for name, cfg, size in specs:
    print(f"[{name}] building and compiling ...", file=sys.stderr, flush=True)
    case = Case(name, cfg, size, torch_side=not (args.no_torch or args.compile_only), threads=args.threads)
    times = {"jax": [], "torch": []} if args.compile_only else run_case(case, args.rounds)
    rows.append({"name": name, "shape": list(case.shape), "times": times, "flops": case.flops,
                 "compile_s": case.compile_s})
    print(table(rows[-1:], peak, mfu_peak).splitlines()[-1], file=sys.stderr, flush=True)
    del case
  print(table(rows, peak, mfu_peak))
  if args.json:
    Path(args.json).write_text(json.dumps({"device": dev.device_kind, "peak_flops": peak, "rows": rows}, indent=1))


if __name__ == "__main__":
  main()
