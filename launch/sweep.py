"""Sweeps: expand ``experiments/sweeps/NAME.py`` into runs, run them locally or on a cluster, collect the results.

    python -m launch.sweep --list                          # every published table and its command
    python -m launch.sweep NAME --local [--variant smoke|demo|full] [--out DIR]
    python -m launch.sweep NAME --print                    # one train + evaluate command per run (any scheduler)
    python -m launch.sky NAME --bucket gs://B/echojax --accelerators tpu-v5e-8 --infra gcp --submit  # every run
                                                           # a SkyPilot managed job (spot recovery; launch/sky.py)
    python -m launch.sweep NAME --collect ROOT             # results of runs finished elsewhere (a bucket's copy)
    python -m launch.sweep NAME --tpu TPU_NAME --zone Z    # gcloud ssh commands for one Cloud TPU VM (launch/tpu.py)
    python -m launch.sweep NAME --slurm [--nodes N]        # one sbatch script per run (launch/slurm.py)

A sweep file defines ``get_sweep(variant) -> dict`` with keys:
  ``config``   the base config spec, e.g. "view_video_spatiotemporal:{variant}" ({variant} is filled in; the
               ``full`` variant is the config without a variant argument),
  ``runs``     list of dicts {"name": str, "overrides": {"key": value, ...}, "x": value for plots, optional
               "arg": more config arguments, e.g. "model=resnet152,size=28", optional "config": this run's
               own config spec, e.g. "video_vit:{variant}"},
  ``metric``   the evaluation metric to report (a key of eval_<split>/metrics.json, dotted for nested),
  ``x_label``  what the swept value means (for the table and the plot), optional ``split`` (default "test"),
  optional ``extra_metrics`` (more metric keys: extra table columns, each with its CI when evaluate gives one),
  optional ``splits`` (every split to evaluate, default [split]), ``seeds`` (each run repeated per seed as
  ``<name>_s<seed>`` with ``--config.seed``), ``compare`` (True: paired comparisons between the runs' settings).
The file may also define ``table(runs, sweep)``: the publication's table (see launch/tables.py).

``ECHOJAX_SWEEP_RUNS`` (comma-separated run names) keeps only those runs of any sweep, for quick checks.

The local runner trains + evaluates each run in its own workdir (``<out>/<run name>``; rerunning resumes and
skips finished runs), then writes ``results.csv``, ``results.md`` and ``<metric>_vs_<x>.png`` in ``<out>``, plus
``table.*`` (the published layout) and ``paired.*`` (comparisons) when the sweep has them. ``--collect`` writes
the same files from runs that finished elsewhere (cluster or bucket), read from ``ROOT/<run name>``.
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
  sweep["config"] = _with_variant(sweep["config"], variant)
  sweep["name"], sweep["variant"] = name, variant
  if callable(getattr(mod, "table", None)):
    sweep["table"] = mod.table
  seeds = sweep.get("seeds")
  if seeds:  # each run once per seed; "setting" names what the seeds repeat (paired comparisons, tables)
    sweep["runs"] = [{**r, "name": f"{r['name']}_s{s}", "setting": r["name"], "seed": s,
                      "overrides": {**r.get("overrides", {}), "seed": s}} for r in sweep["runs"] for s in seeds]
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
  sweep.setdefault("splits", [sweep["split"]])
  if sweep["split"] not in sweep["splits"]:
    sweep["splits"] = [*sweep["splits"], sweep["split"]]
  names = [r["name"] for r in sweep["runs"]]
  if len(set(names)) != len(names):
    raise UserError(f"{path}: run names must be unique, got {names}")
  return sweep


def _with_variant(config: str, variant: str) -> str:
  """``config`` with ``{variant}`` filled in; the ``full`` variant (the publication's size) is no argument."""
  if variant != "full":
    return config.format(variant=variant)
  name, _, arg = config.partition(":")
  arg = ",".join(a for a in arg.split(",") if a and a != "{variant}")
  return f"{name}:{arg}" if arg else name


def config_spec(sweep: dict, run: dict) -> str:
  """The run's ``--config``: its own ``config`` (a sweep over several configs, e.g. the view models) or the
  sweep's, plus the run's config arguments (``arg``)."""
  base = _with_variant(run["config"], sweep.get("variant", "smoke")) if run.get("config") else sweep["config"]
  if not run.get("arg"):
    return base
  name, _, arg = base.partition(":")
  return f"{name}:{','.join(a for a in (run['arg'], arg) if a)}"


def train_command(sweep: dict, run: dict, workdir: str | Path, python: str = sys.executable) -> list[str]:
  cmd = [python, "-m", "echojax.train", "--config", config_spec(sweep, run), "--workdir", str(workdir)]
  for k, v in run.get("overrides", {}).items():
    cmd.append(f"--config.{k}={v}")
  return cmd


def eval_command(sweep: dict, workdir: str | Path, python: str = sys.executable, split: str | None = None) -> list[str]:
  # --out: the runner reads <workdir>/eval_<split>/metrics.json (evaluate's default folder is eval/<split>_best)
  split = split or sweep["split"]
  return [python, "-m", "echojax.evaluate", "--workdir", str(workdir), "--split", split,
          "--out", str(Path(workdir) / f"eval_{split}")]


def eval_commands(sweep: dict, workdir: str | Path, python: str = sys.executable) -> list[list[str]]:
  """One evaluate command per split the sweep reports (``splits``)."""
  return [eval_command(sweep, workdir, python, split) for split in sweep["splits"]]


def _lookup(metrics: dict, dotted: str):
  node = metrics
  for part in dotted.split("."):
    if not isinstance(node, dict) or part not in node:
      return None
    node = node[part]
  return node


def _metrics_path(sweep: dict, workdir: Path, split: str) -> Path:
  return workdir / f"eval_{split}" / "metrics.json"


def run_local(sweep: dict, out: Path, *, python: str = sys.executable) -> list[dict]:
  """Train + evaluate every run in turn (each in a subprocess, so one failure does not end the sweep)."""
  out.mkdir(parents=True, exist_ok=True)
  status, seconds = {}, {}
  for i, run in enumerate(sweep["runs"], start=1):
    wd = out / run["name"]
    print(f"[sweep] run {i}/{len(sweep['runs'])}: {run['name']} -> {wd}", flush=True)
    t0 = time.time()
    status[run["name"]] = "cached"
    todo = [cmd for split, cmd in zip(sweep["splits"], eval_commands(sweep, wd, python))
            if not _metrics_path(sweep, wd, split).exists()]
    if todo:
      status[run["name"]] = "ok"
      for cmd in [train_command(sweep, run, wd, python)] + todo:
        print("  $ " + shlex.join(cmd), flush=True)
        if subprocess.run(cmd, cwd=REPO_ROOT).returncode != 0:
          status[run["name"]] = "failed"
          break
    seconds[run["name"]] = round(time.time() - t0, 1)
  return collect(sweep, out, status=status, seconds=seconds)


def collect(sweep: dict, root: Path, *, out: Path | None = None, status: dict | None = None,
            seconds: dict | None = None) -> list[dict]:
  """Results of every run from ``root/<run name>/eval_<split>/metrics.json`` (a local sweep's folder, or a
  cluster's or bucket's copy of it), written as results.* (and table.*, paired.* when the sweep has them) into
  ``out`` (default ``root``). A run without metrics is ``missing`` (or ``failed`` when the local runner saw it)."""
  root, out = Path(root), Path(out or root)
  out.mkdir(parents=True, exist_ok=True)
  results = []
  for run in sweep["runs"]:
    wd = root / run["name"]
    metrics_path = _metrics_path(sweep, wd, sweep["split"])
    value = low = high = None
    extra: dict = {}
    state = (status or {}).get(run["name"], "collected")
    if metrics_path.exists():
      m = json.loads(metrics_path.read_text())
      value, low, high = (_lookup(m, sweep["metric"] + suffix) for suffix in ("", "_ci_low", "_ci_high"))
      for name in sweep.get("extra_metrics", []):
        for suffix in ("", "_ci_low", "_ci_high"):
          extra[name + suffix] = _lookup(m, name + suffix)
    elif state != "failed":
      state = "missing"
    results.append({"name": run["name"], "x": run.get("x", run["name"]), sweep["metric"]: value,
                    "ci_low": low, "ci_high": high, "status": state,
                    "seconds": (seconds or {}).get(run["name"], ""), "workdir": str(wd),
                    "setting": run.get("setting", run["name"]), "seed": run.get("seed"), **extra})
  write_results(sweep, results, out)
  finished = [r for r in results if r["status"] not in ("failed", "missing")]
  if finished and len(finished) == len(results):
    from launch import tables
    views = [tables.RunView(r, sweep) for r in results]
    if sweep.get("table"):
      tables.write_table(sweep["table"](views, sweep), out, "table")
    if sweep.get("compare"):
      tables.write_table(tables.paired_comparisons(views, sweep["split"]), out, "paired")
  elif sweep.get("table") or sweep.get("compare"):
    print(f"[sweep] {len(results) - len(finished)} run(s) not finished: table.* / paired.* not written", flush=True)
  return results


def write_results(sweep: dict, results: list[dict], out: Path) -> dict[str, Path]:
  """results.csv, results.md (markdown table) and a PNG of the metric against the swept value."""
  metric = sweep["metric"]
  extras = list(sweep.get("extra_metrics", []))
  extra_cols = [name + suffix for name in extras for suffix in ("", "_ci_low", "_ci_high")]
  cols = ["name", "x", metric, "ci_low", "ci_high", *extra_cols, "status", "seconds", "workdir", "setting", "seed"]
  results = [{"ci_low": None, "ci_high": None, "setting": r["name"], "seed": None, **{k: None for k in extra_cols},
              **r} for r in results]
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


def print_published(variant: str = "demo") -> None:
  from launch.tables import PUBLISHED
  for system, table, command in PUBLISHED:
    print(f"{system}: {table}\n    {command.format(variant=variant)}")


@cli_main
def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m launch.sweep", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("name", nargs="?", help="sweep file in experiments/sweeps/")
  p.add_argument("--variant", default="smoke",
                 help="config variant for every run: smoke (seconds), demo (CPU minutes), full (published size)")
  p.add_argument("--out", default=None, help="output folder (default workdirs/sweeps/<name>_<variant>)")
  mode = p.add_mutually_exclusive_group()
  mode.add_argument("--list", action="store_true", help="every published table and the command that makes it")
  mode.add_argument("--local", action="store_true", help="run every job here, one after another")
  mode.add_argument("--print", action="store_true", help="print the train + evaluate commands of every run")
  mode.add_argument("--collect", metavar="ROOT", help="results from ROOT/<run> (runs finished on a cluster/bucket)")
  mode.add_argument("--tpu", metavar="TPU_NAME", help="print Cloud TPU VM commands (see launch/tpu.py)")
  mode.add_argument("--slurm", action="store_true", help="write one sbatch script per run (see launch/slurm.py)")
  p.add_argument("--zone", default="us-central2-b")
  p.add_argument("--nodes", type=int, default=1)
  p.add_argument("--gpus-per-node", type=int, default=8)
  args = p.parse_args(argv)
  if args.list:
    print_published("demo")
    return
  if not args.name:
    p.error("name the sweep (one of: " + ", ".join(list_sweeps()) + "), or give --list")
  if not (args.local or args.print or args.collect or args.tpu or args.slurm):
    p.error("pick one of --local, --print, --collect ROOT, --tpu, --slurm (cloud jobs: python -m launch.sky)")
  sweep = load_sweep(args.name, args.variant)
  out = Path(args.out or f"workdirs/sweeps/{args.name}_{args.variant}")
  if args.local or args.collect:
    results = run_local(sweep, out) if args.local else collect(sweep, Path(args.collect), out=out)
    print((out / "results.md").read_text())
    for extra in ("table.md", "paired.md"):
      if (out / extra).is_file():
        print((out / extra).read_text())
    print(f"[sweep] results: {out/'results.csv'}, {out/'results.md'} and the PNGs beside them")
    if any(r["status"] in ("failed", "missing") for r in results):
      sys.exit(1)
  elif args.print:
    for run in sweep["runs"]:
      wd = out / run["name"]
      print(" && ".join(shlex.join(c) for c in [train_command(sweep, run, wd, "python"),
                                                *eval_commands(sweep, wd, "python")]))
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
