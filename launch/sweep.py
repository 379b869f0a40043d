"""Sweeps: expand ``experiments/sweeps/NAME.py`` into runs, run them locally or print cluster launch commands.

    python -m launch.sweep NAME --local [--variant smoke|demo] [--out DIR] [--jobs 1]
    python -m launch.sweep NAME --print                    # one train command per run (for any scheduler)
    python -m launch.sweep NAME --tpu TPU_NAME --zone Z    # commands for a Cloud TPU VM (see launch/tpu.py)
    python -m launch.sweep NAME --slurm [--nodes N]        # one sbatch script per run (see launch/slurm.py)

A sweep file defines ``get_sweep(variant) -> dict`` with keys:
  ``config``   the base config spec, e.g. "view_video_spatiotemporal:{variant}" ({variant} is filled in),
  ``runs``     list of dicts {"name": str, "overrides": {"key": value, ...}, "x": value for plots},
  ``metric``   the evaluation metric to report (a key of eval_<split>/metrics.json, dotted for nested),
  ``x_label``  what the swept value means (for the table and the plot), optional ``split`` (default "test"),
  optional ``extra_metrics`` (more metric keys: extra table columns, each with its CI when evaluate gives one).

``ECHOJAX_SWEEP_RUNS`` (comma-separated run names) keeps only those runs of any sweep, for quick checks.

The local runner trains + evaluates each run in its own workdir (``<out>/<run name>``; rerunning resumes and
skips finished runs), then writes ``results.csv``, ``results.md`` and ``<metric>_vs_<x>.png`` in ``<out>``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from echojax.errors import UserError, cli_main
from echojax.paths import REPO_ROOT

SWEEPS_DIR = REPO_ROOT / "experiments" / "sweeps"


def list_sweeps() -> list[str]:
  return sorted(p.stem for p in SWEEPS_DIR.glob("*.py") if not p.stem.startswith("_"))


def load_sweep(name: str, variant: str) -> dict:
  path = SWEEPS_DIR / f"{name}.py"
  if not path.is_file():
    raise UserError(f"unknown sweep {name!r} (no file {path}); available: {', '.join(list_sweeps()) or 'none'}")
  spec = importlib.util.spec_from_file_location(f"echojax_sweep_{name}", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  sweep = mod.get_sweep(variant)
  for key in ("config", "runs", "metric"):
    if key not in sweep:
      raise UserError(f"{path}: get_sweep() must return a dict with {key!r}")
  sweep["config"] = sweep["config"].format(variant=variant)
  keep = [n.strip() for n in os.environ.get("ECHOJAX_SWEEP_RUNS", "").split(",") if n.strip()]
  if keep:  # quick checks (and the tests) run a few of a sweep's runs
    unknown = sorted(set(keep) - {r["name"] for r in sweep["runs"]})
    if unknown:
      raise UserError(f"ECHOJAX_SWEEP_RUNS names unknown run(s) {unknown}; runs of {name}: "
                      f"{', '.join(r['name'] for r in sweep['runs'])}")
    sweep["runs"] = [r for r in sweep["runs"] if r["name"] in keep]
  sweep.setdefault("x_label", "x")
  sweep.setdefault("split", "test")
  sweep.setdefault("extra_metrics", [])
  names = [r["name"] for r in sweep["runs"]]
  if len(set(names)) != len(names):
    raise UserError(f"{path}: run names must be unique, got {names}")
  return sweep


def train_command(sweep: dict, run: dict, workdir: str | Path, python: str = sys.executable) -> list[str]:
  cmd = [python, "-m", "echojax.train", "--config", sweep["config"], "--workdir", str(workdir)]
  for k, v in run.get("overrides", {}).items():
    cmd.append(f"--config.{k}={v}")
  return cmd


def eval_command(sweep: dict, workdir: str | Path, python: str = sys.executable) -> list[str]:
  # --out: the local runner reads <workdir>/eval_<split>/metrics.json (evaluate's default folder is eval/<split>_best)
  return [python, "-m", "echojax.evaluate", "--workdir", str(workdir), "--split", sweep["split"],
          "--out", str(Path(workdir) / f"eval_{sweep['split']}")]


def _lookup(metrics: dict, dotted: str):
  node = metrics
  for part in dotted.split("."):
    if not isinstance(node, dict) or part not in node:
      return None
    node = node[part]
  return node


def run_local(sweep: dict, out: Path, *, python: str = sys.executable) -> list[dict]:
  """Train + evaluate every run in turn (each in a subprocess, so one failure does not end the sweep)."""
  out.mkdir(parents=True, exist_ok=True)
  results = []
  for i, run in enumerate(sweep["runs"], start=1):
    wd = out / run["name"]
    metrics_path = wd / f"eval_{sweep['split']}" / "metrics.json"
    print(f"[sweep] run {i}/{len(sweep['runs'])}: {run['name']} -> {wd}", flush=True)
    t0 = time.time()
    status = "ok"
    if not metrics_path.exists():
      for cmd in (train_command(sweep, run, wd, python), eval_command(sweep, wd, python)):
        print("  $ " + shlex.join(cmd), flush=True)
        if subprocess.run(cmd, cwd=REPO_ROOT).returncode != 0:
          status = "failed"
          break
    else:
      status = "cached"
    value = low = high = None
    extra: dict = {}
    if metrics_path.exists():
      m = json.loads(metrics_path.read_text())
      value, low, high = (_lookup(m, sweep["metric"] + suffix) for suffix in ("", "_ci_low", "_ci_high"))
      for name in sweep.get("extra_metrics", []):
        for suffix in ("", "_ci_low", "_ci_high"):
          extra[name + suffix] = _lookup(m, name + suffix)
    results.append({"name": run["name"], "x": run.get("x", run["name"]), sweep["metric"]: value,
                    "ci_low": low, "ci_high": high, "status": status, "seconds": round(time.time() - t0, 1),
                    "workdir": str(wd), **extra})
  write_results(sweep, results, out)
  return results


def write_results(sweep: dict, results: list[dict], out: Path) -> dict[str, Path]:
  """results.csv, results.md (markdown table) and a PNG of the metric against the swept value."""
  metric = sweep["metric"]
  extras = list(sweep.get("extra_metrics", []))
  extra_cols = [name + suffix for name in extras for suffix in ("", "_ci_low", "_ci_high")]
  cols = ["name", "x", metric, "ci_low", "ci_high", *extra_cols, "status", "seconds", "workdir"]
  results = [{"ci_low": None, "ci_high": None, **{k: None for k in extra_cols}, **r} for r in results]
  with open(out / "results.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols)
    w.writeheader()
    w.writerows(results)

  def fmt(v):
    return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))

  def interval(r, low="ci_low", high="ci_high"):
    ok = all(isinstance(r[k], (int, float)) and math.isfinite(r[k]) for k in (low, high))
    return f"[{r[low]:.3f}, {r[high]:.3f}]" if ok else ""

  def extra(r, name):
    return f"{fmt(r[name])} {interval(r, name + '_ci_low', name + '_ci_high')}".strip()

  head = "".join(f" {name} [95% CI] |" for name in extras)
  lines = [f"| run | {sweep['x_label']} | {metric} | 95% bootstrap CI |{head} status |",
           "|---|---|---|---|" + "---|" * len(extras) + "---|"]
  lines += [f"| {r['name']} | {r['x']} | {fmt(r[metric])} | {interval(r)} |"
            + "".join(f" {extra(r, name)} |" for name in extras) + f" {r['status']} |" for r in results]
  (out / "results.md").write_text(f"Sweep over {sweep['x_label']} ({sweep['config']}, {sweep['split']} split)\n\n"
                                  + "\n".join(lines) + "\n")
  paths = {"csv": out / "results.csv", "md": out / "results.md"}
  from echojax.plots import plot_metric_vs_param
  ys = [r[metric] if isinstance(r[metric], (int, float)) else float("nan") for r in results]
  num = lambda v: float(v) if isinstance(v, (int, float)) else float("nan")
  yerr = [[y - num(r["ci_low"]) for y, r in zip(ys, results)], [num(r["ci_high"]) - y for y, r in zip(ys, results)]]
  yerr = yerr if any(math.isfinite(v) for row in yerr for v in row) else None
  safe = "".join(c if c.isalnum() else "_" for c in f"{metric}_vs_{sweep['x_label']}")
  paths["png"] = plot_metric_vs_param([str(r["x"]) for r in results], ys, out / f"{safe}.png", yerr=yerr,
                                      xlabel=sweep["x_label"], ylabel=metric, title=f"{metric} vs {sweep['x_label']}",
                                      point_labels=[r["name"] for r in results])
  return paths


@cli_main
def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m launch.sweep", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("name", help="sweep file in experiments/sweeps/")
  p.add_argument("--variant", default="smoke", help="config variant for every run: smoke, demo, or a full arg")
  p.add_argument("--out", default=None, help="output folder (default workdirs/sweeps/<name>_<variant>)")
  mode = p.add_mutually_exclusive_group(required=True)
  mode.add_argument("--local", action="store_true", help="run every job here, one after another")
  mode.add_argument("--print", action="store_true", help="print the train + evaluate command of every run")
  mode.add_argument("--tpu", metavar="TPU_NAME", help="print Cloud TPU VM commands (see launch/tpu.py)")
  mode.add_argument("--slurm", action="store_true", help="write one sbatch script per run (see launch/slurm.py)")
  p.add_argument("--zone", default="us-central2-b")
  p.add_argument("--nodes", type=int, default=1)
  p.add_argument("--gpus-per-node", type=int, default=8)
  args = p.parse_args(argv)
  sweep = load_sweep(args.name, args.variant)
  out = Path(args.out or f"workdirs/sweeps/{args.name}_{args.variant}")
  if args.local:
    results = run_local(sweep, out)
    print((out / "results.md").read_text())
    print(f"[sweep] results: {out/'results.csv'}, {out/'results.md'} and the PNG beside them")
    if any(r["status"] == "failed" for r in results):
      sys.exit(1)
  elif args.print:
    for run in sweep["runs"]:
      print(shlex.join(train_command(sweep, run, out / run["name"], "python")) + " && "
            + shlex.join(eval_command(sweep, out / run["name"], "python")))
  elif args.tpu:
    from launch import tpu
    for run in sweep["runs"]:
      print(tpu.command(args.tpu, args.zone, train_command(sweep, run, out / run["name"], "python3")))
  else:
    from launch import slurm
    for run in sweep["runs"]:
      path = slurm.write_script(out / f"{run['name']}.sbatch", train_command(sweep, run, out / run["name"], "python"),
                                nodes=args.nodes, gpus_per_node=args.gpus_per_node, job_name=run["name"])
      print(f"sbatch {path}")


if __name__ == "__main__":
  main()
