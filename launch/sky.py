"""SkyPilot managed jobs: every run of a sweep as its own spot-recovered job on Cloud TPU, GPU clouds, SLURM or k8s.

    pip install -e '.[cloud]'   # SkyPilot 0.14.1; then `sky check` once for your cloud / SLURM cluster / k8s
    python -m launch.sky spatiotemporal_weighting --variant demo --bucket gs://BUCKET/echojax \\
        --accelerators tpu-v5e-8 --infra gcp [--out DIR] [--submit]
    python -m launch.sky NAME --bucket gs://BUCKET/echojax --accelerators H100:8 --infra slurm/CLUSTER --no-spot
    sky jobs launch -y -n NAME DIR/RUN.yaml     # what --submit runs, once per run
    sky jobs queue                              # state and recovery count of every job
    gcloud storage cp -r gs://BUCKET/echojax/NAME .   # afterwards: <run>/eval_<split>/metrics.json per run

Each task uploads this checkout (``workdir: .``), installs it (``.[tpu]`` or ``.[cuda]``) in a Python 3.11 venv,
mounts the bucket at ``/echojax-runs`` and runs ``launch.sweep``'s train command with
``--workdir /echojax-runs/<sweep>/<run>``, then (on node 0) its eval command, which writes
``<workdir>/eval_<split>/metrics.json``. A preempted spot job is relaunched by SkyPilot's jobs controller
(``job_recovery``; also up to ``max_restarts_on_errors`` times after a non-zero exit); the trainer resumes from
the workdir's latest checkpoint (it saves on SIGTERM), and a finished run's train step ends at once.
Multi-host: a TPU pod slice (e.g. ``tpu-v4-32``) is one SkyPilot node whose hosts all run the script and find
each other through the TPU metadata (JAX); with ``num_nodes > 1`` on GPUs the script sets ``ECHOJAX_COORDINATOR``
/ ``ECHOJAX_NUM_PROCESSES`` / ``ECHOJAX_PROCESS_ID`` from ``SKYPILOT_NODE_IPS`` / ``SKYPILOT_NUM_NODES`` /
``SKYPILOT_NODE_RANK`` (read by ``echojax.sharding.initialize_distributed``).

Why SkyPilot: one task spec gives managed jobs with spot-preemption recovery on Cloud TPU, GPU clouds, SLURM
and Kubernetes, it is maintained, and its task schema can be checked offline (``validate_task``). XManager
launches on Vertex AI / local only (no SLURM, no spot recovery); raw ``gcloud`` queued resources are TPU-only
and leave relaunching a preempted run to us. SkyPilot is optional: it is imported only inside functions here.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
from pathlib import Path

from echojax.errors import UserError, cli_main
from launch.sweep import eval_commands, load_sweep, train_command

MOUNT = "/echojax-runs"
VENV = "~/echojax-venv"
COORDINATOR_PORT = 8476
_INSTALL_HINT = "SkyPilot is not installed: pip install -e '.[cloud]' (skypilot==0.14.1)"


def sky_name(*parts: str) -> str:
  """A valid SkyPilot task / managed-job name: letters, digits and single ``._-`` separators."""
  name = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts))
  name = re.sub(r"([._-])[._-]+", r"\1", name).strip("._-")
  if not name:
    raise UserError(f"cannot make a SkyPilot name from {parts!r}")
  return name


def _is_tpu(accelerators: str) -> bool:
  return accelerators.strip().lower().startswith("tpu-")


def default_setup(accelerators: str) -> str:
  """Python 3.11 venv (echojax requires it; cloud images ship other versions) with this checkout installed."""
  extra = "tpu" if _is_tpu(accelerators) else "cuda"
  return "\n".join([
      "set -euo pipefail",
      'export PATH="$HOME/.local/bin:$PATH"',
      "command -v uv >/dev/null || python3 -m pip install -q --user uv"
      " || curl -LsSf https://astral.sh/uv/install.sh | sh",
      f"[ -x {VENV}/bin/python ] || uv venv --python 3.11 {VENV}",
      f"uv pip install -q --python {VENV}/bin/python -e '.[{extra}]'",
  ])


def run_script(sweep: dict, run: dict, workdir: str, *, accelerators: str, num_nodes: int) -> str:
  lines = ["set -eo pipefail", f"if [ -f {VENV}/bin/activate ]; then source {VENV}/bin/activate; fi"]
  if num_nodes > 1 and not _is_tpu(accelerators):  # GPU nodes: explicit coordinator for jax.distributed
    lines += [
        'export ECHOJAX_COORDINATOR="$(echo "$SKYPILOT_NODE_IPS" | head -n1):${ECHOJAX_COORDINATOR_PORT}"',
        'export ECHOJAX_NUM_PROCESSES="$SKYPILOT_NUM_NODES"',
        'export ECHOJAX_PROCESS_ID="$SKYPILOT_NODE_RANK"',
    ]
  lines.append(shlex.join(train_command(sweep, run, workdir, "python")))
  lines += ['if [ "${SKYPILOT_NODE_RANK:-0}" = "0" ]; then',
            *("  " + shlex.join(cmd) for cmd in eval_commands(sweep, workdir, "python")),
            "fi"]
  return "\n".join(lines) + "\n"


def task_spec(sweep: dict, run: dict, *, bucket: str, accelerators: str, infra: str | None = None,
              use_spot: bool = True, num_nodes: int = 1, setup: str | None = None, sweep_name: str,
              mount_mode: str = "MOUNT", max_restarts_on_errors: int = 3,
              recovery_strategy: str = "EAGER_NEXT_REGION") -> dict:
  """The SkyPilot task (YAML as a dict) that trains then evaluates ``run`` with its workdir on ``bucket``.

  ``bucket``: a bucket URL (``gs://b/prefix``, ``s3://``, ``r2://``, ...), mounted at /echojax-runs with
  ``mount_mode`` (``MOUNT``: writes reach the bucket when a file is closed, so a checkpoint survives preemption;
  ``MOUNT_CACHED``: faster, uploads in the background), or an absolute path on a filesystem every node shares
  (SLURM / k8s clusters without FUSE), used as it is.
  """
  if num_nodes < 1:
    raise UserError(f"num_nodes must be >= 1, got {num_nodes}")
  cloud = (infra or "").split("/")[0].lower()
  if use_spot and cloud == "slurm":
    raise UserError("SLURM has no spot instances (SkyPilot: 'Spot instances are not supported in Slurm'); pass "
                    "use_spot=False (--no-spot): job_recovery still relaunches a job that fails or loses its node")
  file_mounts = None
  if bucket.startswith("/"):
    root = bucket.rstrip("/") or "/"
  elif "://" in bucket:
    root = MOUNT
    file_mounts = {MOUNT: {"source": bucket.rstrip("/"), "mode": mount_mode}}
  else:
    raise UserError(f"bucket {bucket!r}: give a bucket URL such as gs://my-bucket/echojax (or s3://, r2://, ...) "
                    f"or an absolute path on a filesystem shared by all nodes")
  workdir = f"{root}/{sweep_name}/{run['name']}"
  resources = {"accelerators": accelerators, "use_spot": bool(use_spot),
               "job_recovery": {"strategy": recovery_strategy, "max_restarts_on_errors": int(max_restarts_on_errors)}}
  if infra:
    resources["infra"] = infra
  envs = {"PYTHONUNBUFFERED": "1", "ECHOJAX_WORKDIR": workdir}
  if num_nodes > 1 and not _is_tpu(accelerators):
    envs["ECHOJAX_COORDINATOR_PORT"] = str(COORDINATOR_PORT)
  spec = {
      "name": sky_name(sweep_name, run["name"]),
      "workdir": ".",
      "resources": resources,
      "num_nodes": int(num_nodes),
      "envs": envs,
      "setup": setup if setup is not None else default_setup(accelerators),
      "run": run_script(sweep, run, workdir, accelerators=accelerators, num_nodes=num_nodes),
  }
  if file_mounts:
    spec["file_mounts"] = file_mounts
  return spec


def _dump(spec: dict) -> str:
  """yaml.safe_dump, with multi-line strings (setup, run) as readable ``|`` blocks."""
  import yaml

  class Dumper(yaml.SafeDumper):
    pass

  def text(dumper, value):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

  Dumper.add_representer(str, text)
  return yaml.dump(spec, Dumper=Dumper, sort_keys=False, default_flow_style=False)


def write_tasks(sweep: dict, out_dir: str | Path, **kwargs) -> list[Path]:
  """One ``<run>.yaml`` per run of ``sweep`` in ``out_dir`` (``kwargs``: those of :func:`task_spec`)."""
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths = []
  for run in sweep["runs"]:
    path = out / f"{run['name']}.yaml"
    path.write_text(_dump(task_spec(sweep, run, **kwargs)))
    paths.append(path)
  return paths


def _import_sky():
  try:
    import sky
  except ImportError as e:
    raise UserError(f"{_INSTALL_HINT} ({e})") from None
  return sky


def validate_task(path: str | Path) -> None:
  """SkyPilot's own offline checks of a task YAML; UserError naming the file and SkyPilot's message on failure.

  ``sky.Task.from_yaml``: the task JSON schema (unknown or mistyped fields anywhere, file_mounts / storage modes,
  env names) and ``sky.Resources`` construction (infra string and cloud name, accelerator string, job_recovery
  shape). Then the task name rule, the job-recovery strategy against SkyPilot's registry, and the cloud's static
  feature table (spot, multi-node). Region / accelerator-catalog checks need SkyPilot's online catalogs and the
  cloud's credentials, so they happen at ``sky jobs launch``, not here.
  """
  sky = _import_sky()
  from sky import clouds
  from sky.utils import registry

  path = Path(path)
  try:
    task = sky.Task.from_yaml(str(path))
    task.validate_name()
    task.validate_run()
    for r in task.resources:
      if r.job_recovery and r.job_recovery.get("strategy"):
        registry.JOBS_RECOVERY_STRATEGY_REGISTRY.from_str(r.job_recovery["strategy"])
      features = set()
      if r.use_spot:
        features.add(clouds.CloudImplementationFeatures.SPOT_INSTANCE)
      if task.num_nodes > 1:
        features.add(clouds.CloudImplementationFeatures.MULTI_NODE)
      if r.cloud is not None and features:
        try:
          r.cloud.check_features_are_supported(r, features)
        except ImportError:  # e.g. k8s needs skypilot[kubernetes] to read its table; checked at launch instead
          pass
  except Exception as e:  # every failure here is SkyPilot (or its YAML / JSON-schema layer) rejecting the file
    raise UserError(f"{path}: SkyPilot rejects this task: {type(e).__name__}: {e}") from None


def launch_commands(paths: list[str | Path]) -> list[str]:
  """``sky jobs launch -y -n NAME PATH`` per task file (NAME: the task's ``name``)."""
  import yaml

  cmds = []
  for p in paths:
    name = (yaml.safe_load(Path(p).read_text()) or {}).get("name") or sky_name(Path(p).stem)
    cmds.append(shlex.join(["sky", "jobs", "launch", "-y", "-n", name, str(p)]))
  return cmds


def submit(paths: list[str | Path]) -> None:
  """Runs the launch commands (each returns once its managed job is submitted); UserError if any failed."""
  failed = []
  for cmd in launch_commands(paths):
    print("$ " + cmd, flush=True)
    if subprocess.run(shlex.split(cmd)).returncode != 0:
      failed.append(cmd)
  if failed:
    raise UserError(f"{len(failed)} launch(es) failed:\n" + "\n".join(failed))


@cli_main
def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m launch.sky", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("name", help="sweep file in experiments/sweeps/")
  p.add_argument("--variant", default="demo")
  p.add_argument("--bucket", required=True, help="gs://bucket/prefix (or s3://, r2://, ...) or a shared path")
  p.add_argument("--accelerators", required=True, help="e.g. tpu-v5e-8, tpu-v4-32, H100:8")
  p.add_argument("--infra", default=None, help="e.g. gcp, gcp/us-central2, slurm/CLUSTER, k8s")
  p.add_argument("--no-spot", action="store_true", help="on-demand instances (required on SLURM)")
  p.add_argument("--num-nodes", type=int, default=1)
  p.add_argument("--mount-mode", default="MOUNT", choices=["MOUNT", "MOUNT_CACHED"])
  p.add_argument("--out", default=None, help="folder for the task YAMLs (default workdirs/sky/<name>_<variant>)")
  p.add_argument("--submit", action="store_true", help="run `sky jobs launch` for every task (default: print)")
  args = p.parse_args(argv)
  sweep = load_sweep(args.name, args.variant)
  out = Path(args.out or f"workdirs/sky/{args.name}_{args.variant}")
  paths = write_tasks(sweep, out, bucket=args.bucket, accelerators=args.accelerators, infra=args.infra,
                      use_spot=not args.no_spot, num_nodes=args.num_nodes, sweep_name=f"{args.name}_{args.variant}",
                      mount_mode=args.mount_mode)
  for path in paths:
    validate_task(path)
  if args.submit:
    submit(paths)
  else:
    print("\n".join(launch_commands(paths)))


if __name__ == "__main__":
  main()
