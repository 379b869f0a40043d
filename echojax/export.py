"""Export a trained echojax model to the echoforge registry (PyTorch module + safetensors weights + manifest).

    python -m echojax.export --workdir DIR --name MODEL [--registry DIR] [--checkpoint best|latest]
                             [--input-size H [W]] [--frames T] [--parity-tol 1e-4]

Reads the run's ``DIR/config.json`` and its checkpoint (best if one exists, else latest; only ``params`` and
``batch_stats`` are read), converts the weights with the explicit name map of :mod:`echojax.convert`, builds the
echoforge torch module with the same architecture arguments, and checks on a random input that the torch output
equals the JAX output (eval mode, float32; the export fails if max |diff| > 1e-4 * max(1, max |output|)). Then it writes
``<registry>/<MODEL>/v<N>/model.safetensors`` and ``manifest.json``: name, architecture + arguments, version, input
specification (shape, layout, value range, normalisation), class names, sha256 of the weights, the run's config, the
git commit, evaluation metrics found in the workdir (``eval/*/metrics.json``, last ``val`` line of
``metrics.jsonl``) and the measured parity. Load it with ``echoforge.load_model(MODEL)`` (no JAX needed).

The Python API :func:`export_variables` exports a variables pytree directly (used by the CLI and tests).
Registry root: ``--registry``, else ``$ECHOFORGE_HOME``, else ``~/.cache/echoforge``.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from echoforge import archs
from echojax.errors import UserError, cli_main

log = logging.getLogger("echojax.export")

# Video or image input, the default input size and the torch-only arguments of every architecture come from its
# entry in the architecture table echoforge.archs.ARCHS.
DEFAULT_PARITY_TOL = 1e-4


def _import_torch_side():
  try:
    import torch

    import echoforge
    from echoforge import registry as reg
    from echoforge.models import build
  except ImportError as e:
    raise UserError(f"exporting needs PyTorch and safetensors ({e}); install them with "
                    f"pip install 'echojax[torch]'") from e
  return torch, echoforge, reg, build


def _jsonable(x: Any) -> Any:
  if isinstance(x, Mapping):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, np.generic):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  if isinstance(x, (str, int, float, bool)) or x is None:
    return x
  return str(x)


def input_spec(arch: str, arch_kwargs: Mapping[str, Any], *, size: tuple[int, int] | None = None,
               frames: int | None = None, channels: int = 3, normalisation: Mapping[str, Any] | None = None,
               value_range: tuple[float, float] | None = None) -> dict[str, Any]:
  """The manifest's ``input`` block: torch layout and shape (without batch), value range and normalisation."""
  entry = archs.get(arch)
  video = entry.video
  if size is None:
    size = (entry.input_size, entry.input_size)
  if arch == "echosdnet":
    layout = arch_kwargs.get("layout", "keras")
    pre = arch_kwargs.get("preprocess") or ("caffe" if layout == "keras" else "torch")
    normalisation = normalisation or {"inside_model": pre, "note": "feed RGB in [0, 1]; the model normalises"}
    value_range = value_range or (0.0, 1.0)
  spec: dict[str, Any] = {
    "layout": "NCTHW" if video else "NCHW",
    "shape": [channels, int(frames or 16), *size] if video else [channels, *size],
    "channels": channels, "channel_order": "RGB", "size": list(size),
    "value_range": list(value_range) if value_range else None,
    "normalisation": dict(normalisation) if normalisation else None,
    "dtype": "float32",
  }
  if video:
    spec["frames"] = int(frames or 16)
  return spec


def _jax_apply(arch: str, arch_kwargs: Mapping[str, Any], variables: Mapping[str, Any], x_nhwc: np.ndarray):

  from echojax.models import get_model, layers

  model = get_model(arch, **dict(arch_kwargs))
  vs = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
  out, _ = layers.jit(lambda v, x: model.apply(v, x, train=False))(vs, x_nhwc)
  return np.asarray(out, np.float32)


def parity(module, arch: str, arch_kwargs: Mapping[str, Any], variables: Mapping[str, Any],
           torch_shape: tuple[int, ...], batch: int = 2, seed: int = 0) -> tuple[float, float]:
  """(max |torch(x) - jax(x)|, max |jax(x)|) on a random [0, 1) input of torch shape ``(batch, *torch_shape)``,
  eval mode."""
  import torch

  x = np.random.default_rng(seed).random((batch, *torch_shape), dtype=np.float32)
  x_jax = np.moveaxis(x, 1, -1)  # channels last: (B, H, W, C) / (B, T, H, W, C)
  y_jax = _jax_apply(arch, arch_kwargs, variables, x_jax)
  module.eval()
  with torch.no_grad():
    y_torch = module(torch.from_numpy(x)).numpy()
  if y_jax.shape != y_torch.shape:
    raise UserError(f"torch output shape {y_torch.shape} != JAX output shape {y_jax.shape} for {arch}; the echoforge "
                    "mirror does not match the JAX model")
  return float(np.max(np.abs(y_jax - y_torch))), float(np.max(np.abs(y_jax)))


def torch_kwargs_for(arch: str, spec: Mapping[str, Any]) -> dict[str, Any]:
  """Torch-only constructor arguments fixed by the input (the entry's ``torch_input_kwargs``; ViT: the
  position-embedding grid = the image size, VideoViT also the number of frames)."""
  values = {"image_size": lambda: [int(v) for v in spec["size"]], "num_frames": lambda: int(spec["frames"])}
  return {k: values[k]() for k in archs.get(arch).torch_input_kwargs}


def to_module(variables: Mapping[str, Any], arch: str, arch_kwargs: Mapping[str, Any],
              torch_kwargs: Mapping[str, Any] | None = None):
  """Flax variables -> the echoforge torch module (eval mode) holding the converted weights."""
  torch, _, _, build = _import_torch_side()
  from echojax.convert import flax_to_torch, rules_for

  kw = {**dict(arch_kwargs), **dict(torch_kwargs or {})}
  try:
    module = build(arch, **kw)
  except (KeyError, TypeError, ValueError) as e:
    raise UserError(f"cannot build the echoforge module for model {arch!r} with {kw}: {e}") from e
  expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
  sd = flax_to_torch(variables, rules_for(arch, arch_kwargs, variables), expected)
  module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}, strict=True)
  module.eval()
  return module


def export_variables(variables: Mapping[str, Any], model_name: str, arch: str, arch_kwargs: Mapping[str, Any],
                     *, registry: str | Path | None = None, class_names: list[str] | None = None,
                     input: Mapping[str, Any] | None = None, source: Mapping[str, Any] | None = None,
                     metrics: Mapping[str, Any] | None = None, task: Mapping[str, Any] | None = None,
                     check_parity: bool = True, parity_tol: float = DEFAULT_PARITY_TOL) -> Path:
  """Exports flax ``variables`` (``{"params": ..., "batch_stats": ...}``) of ``get_model(arch, **arch_kwargs)``.

  Returns the written registry folder ``<registry>/<model_name>/v<N>``. ``input`` is the manifest's input block
  (default: :func:`input_spec` for the architecture). With ``check_parity`` the converted torch module and the JAX
  model are run on the same random input and the export fails when max |diff| > ``parity_tol`` * max(1, max |y|).
  """
  _, _, reg, _ = _import_torch_side()
  bad = [k for k, v in _flat_leaves(variables) if not np.all(np.isfinite(np.asarray(v, np.float64)))]
  if bad:
    raise UserError(f"export of {model_name!r} refused: {len(bad)} weight tensor(s) hold NaN or inf (first: "
                    f"{bad[0]}), so the model's own output is not finite; the checkpoint is broken (a diverged run?), "
                    "not the conversion. Export an earlier checkpoint (--checkpoint) or retrain")
  try:
    reg.check_name(model_name)
  except reg.EchoforgeError as e:
    raise UserError(f"--name: {e}") from e
  arch_kwargs = {k: v for k, v in dict(arch_kwargs).items() if k not in ("dtype", "param_dtype")}
  variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
  variables = _to_numpy(variables)
  spec = dict(input) if input else input_spec(arch, arch_kwargs)
  torch_kwargs = torch_kwargs_for(arch, spec)
  module = to_module(variables, arch, arch_kwargs, torch_kwargs)
  par: dict[str, Any] = {"checked": False}
  if check_parity:
    diff, scale = parity(module, arch, arch_kwargs, variables, tuple(spec["shape"]))
    # float32 rounding grows with the output's magnitude (trained logits can be in the tens), so the bound is
    # tol * max(1, max |output|): absolute for O(1) outputs, relative beyond.
    bound = parity_tol * max(1.0, scale)
    par = {"checked": True, "max_abs_diff": diff, "max_abs_output": scale, "tolerance": parity_tol,
           "bound": bound, "rule": "max_abs_diff <= tolerance * max(1, max_abs_output)",
           "input": "uniform [0, 1), batch 2", "mode": "eval, float32"}
    log.info("parity torch vs JAX: max |diff| = %.3g (max |output| %.3g, bound %.2g)", diff, scale, bound)
    if not diff <= bound:
      raise UserError(f"export of {model_name!r} refused: the torch module differs from the JAX model by {diff:.3g} "
                      f"(> {bound:.2g}) on the same input. The conversion for {arch!r} is broken; report it "
                      "(echojax/convert.py) or pass --parity-tol to override")
  num_params = int(sum(p.numel() for p in module.parameters()))
  manifest = {
    "architecture": {"name": arch, "kwargs": _jsonable(arch_kwargs), "torch_kwargs": _jsonable(torch_kwargs),
                     "framework": "torch",
                     "module": f"{type(module).__module__}.{type(module).__name__}"},
    "input": _jsonable(spec),
    "output": {"kind": (task or {}).get("kind"), "class_names": list(class_names) if class_names else None,
               "activation": "none (logits / raw outputs)"},
    "class_names": list(class_names) if class_names else None,
    "weights": {"format": "safetensors", "num_params": num_params},
    "source": _jsonable(source or {}),
    "metrics": _jsonable(metrics or {}),
    "parity": par,
  }
  out = reg.write_entry(model_name, module.state_dict(), manifest, registry)
  log.info("exported %s (%s, %d parameters) to %s", model_name, arch, num_params, out)
  return out


def _flat_leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
  """("collection/a/b", array) for every leaf of a nested mapping."""
  if isinstance(tree, Mapping):
    return [kv for k, v in tree.items() for kv in _flat_leaves(v, f"{prefix}/{k}" if prefix else str(k))]
  return [(prefix, tree)]


def _to_numpy(tree: Any) -> Any:
  if isinstance(tree, Mapping):
    return {k: _to_numpy(v) for k, v in tree.items()}
  return np.asarray(tree)


# ------------------------------------------------------------------------------------------------------- workdir
def _git_commit() -> dict[str, Any]:
  from echojax.paths import REPO_ROOT

  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return {"git_commit": None}
  if head.returncode != 0:
    return {"git_commit": None}
  return {"git_commit": head.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}


def workdir_metrics(workdir: Path) -> dict[str, Any]:
  """Evaluation results found in the workdir: ``eval/<split>_<ckpt>/metrics.json`` and the last val line."""
  out: dict[str, Any] = {}
  for p in sorted(workdir.glob("eval/*/metrics.json")):
    try:
      m = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
      log.warning("skipping unreadable %s", p)
      continue
    out[p.parent.name] = m.get("metrics", m) if isinstance(m, dict) else m
  jl = workdir / "metrics.jsonl"
  if jl.is_file():
    last_val = None
    for line in jl.read_text().splitlines():
      try:
        rec = json.loads(line)
      except json.JSONDecodeError:
        continue
      if isinstance(rec, dict) and rec.get("split") == "val":
        last_val = rec
    if last_val is not None:
      out["val_last"] = last_val
  return out


def _data_spec(config, arch: str, arch_kwargs: Mapping[str, Any], size_arg, frames_arg) -> dict[str, Any]:
  data = config.get("data", None)
  get = (lambda k, d=None: data.get(k, d)) if data is not None else (lambda k, d=None: d)
  size = None
  if size_arg:
    size = (size_arg[0], size_arg[-1])
  elif get("size"):
    size = (int(get("size")), int(get("size")))
  else:
    bc = get("builder_config") or get("config")
    if bc is not None and str(bc).isdigit():
      size = (int(bc), int(bc))
  frames = frames_arg or get("frames")
  norm: dict[str, Any] | None = None
  if arch != "echosdnet":
    norm = {"kind": "per-channel (x - mean) / std on [0, 255] pixel values",
            "stats": "echojax_stats.json of the prepared training data (python -m echojax.data.prepare)",
            "dataset": get("name"), "builder_config": get("builder_config") or get("config")}
    stats = _find_stats(get("data_dir"), get("name"))
    if stats is not None:
      norm["mean"], norm["std"] = stats
  return input_spec(arch, arch_kwargs, size=size, frames=frames, normalisation=norm,
                    value_range=None if arch == "echosdnet" else (0.0, 255.0))


def _find_stats(data_dir: Any, name: Any) -> tuple[list[float], list[float]] | None:
  if not data_dir or not name or not Path(str(data_dir)).is_dir():
    return None
  from echojax.data.pipeline import STATS_FILE, load_stats

  found = sorted(Path(str(data_dir)).glob(f"{name}/*/*/{STATS_FILE}")) + sorted(
    Path(str(data_dir)).glob(f"{name}/*/{STATS_FILE}"))
  if not found:
    return None
  try:
    mean, std = load_stats(found[-1])
  except UserError:
    return None
  return [float(v) for v in mean], [float(v) for v in std]


def export_workdir(workdir: str | Path, name: str, registry: str | Path | None = None, checkpoint: str = "auto",
                   size: list[int] | None = None, frames: int | None = None,
                   parity_tol: float = DEFAULT_PARITY_TOL) -> Path:
  """The CLI's work: restore the run's params/batch_stats and export them under ``name``."""
  from echojax import config as config_lib
  from echojax import run as run_lib

  workdir = Path(workdir)
  cfg_path = workdir / run_lib.CONFIG_FILE
  run = run_lib.Run.load(workdir)
  config, task = run_lib.read_config(workdir), run.task
  arch = str(config.model.name)
  kwargs = dict(config.model.kwargs)
  kwargs = {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in kwargs.items()}
  # The trainer gives the model the task's output size; every exportable family names it ``num_classes``.
  if "num_outputs" in kwargs:
    kwargs.setdefault("num_classes", kwargs.pop("num_outputs"))
  kwargs.setdefault("num_classes", task.num_outputs)
  from echoforge import archs

  if arch not in archs.ARCHS:
    raise UserError(f"{cfg_path}: model.name={arch!r} has no PyTorch mirror in echoforge yet; exportable: "
                    f"{', '.join(archs.names())}")
  step, which, variables = run.restore(checkpoint)  # params + batch_stats as numpy: any device count
  spec = _data_spec(config, arch, kwargs, size, frames)
  source = {"workdir": str(workdir.resolve()), "step": step, "checkpoint": which,
            "config": json.loads(config_lib.to_json(config)), **_git_commit()}
  class_names = getattr(task, "class_names", None)
  return export_variables(variables, name, arch, kwargs, registry=registry, class_names=class_names, input=spec,
                          source=source, metrics=workdir_metrics(workdir),
                          task={"kind": str(config.task.get("kind", ""))}, parity_tol=parity_tol)


@cli_main
def main(argv: list[str] | None = None) -> None:
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
  logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every step of a restore at INFO
  p = argparse.ArgumentParser(prog="python -m echojax.export", description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", required=True, help="training run folder (holds config.json and checkpoints/)")
  p.add_argument("--name", required=True, help="registry name, e.g. EchoSDNet (load with echoforge.load_model)")
  p.add_argument("--registry", default=None, help="registry root (default $ECHOFORGE_HOME, else ~/.cache/echoforge)")
  p.add_argument("--checkpoint", default="auto", choices=["auto", "best", "latest"],
                 help="auto = best if the run has one, else latest")
  p.add_argument("--input-size", type=int, nargs="+", default=None, metavar="H [W]",
                 help="input frame size recorded in the manifest (default from the run's data config)")
  p.add_argument("--frames", type=int, default=None, help="clip length for video models (default data.frames)")
  p.add_argument("--parity-tol", type=float, default=DEFAULT_PARITY_TOL,
                 help="export-time parity check: max |torch - JAX| <= tol * max(1, max |output|)")
  a = p.parse_args(sys.argv[1:] if argv is None else argv)
  out = export_workdir(a.workdir, a.name, a.registry, a.checkpoint, a.input_size, a.frames, a.parity_tol)
  manifest = json.loads((out / "manifest.json").read_text())
  print(f"exported {manifest['name']} {manifest['version']} -> {out}")
  print(f"  architecture {manifest['architecture']['name']} {manifest['architecture']['kwargs']}")
  print(f"  sha256 {manifest['weights']['sha256']}  parity max|diff| {manifest['parity'].get('max_abs_diff')}")
  print(f"  load with: echoforge.load_model({manifest['name']!r}"
        + (f", registry={a.registry!r}" if a.registry else "")
        + f", version={manifest['version']!r}, sha256={manifest['weights']['sha256']!r})"
        + "  # sha256= pins these weights")


if __name__ == "__main__":
  main()
