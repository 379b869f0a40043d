"""SLURM GPU launcher: writes (and with --submit, submits) an sbatch script for a multi-node train run.

    python -m launch.slurm --nodes 2 --gpus-per-node 8 [--submit] -- --config video_vit --workdir /shared/runs/x

One task per node (``--ntasks-per-node=1``), each seeing all GPUs of its node; ``jax.distributed.initialize()``
reads the SLURM environment (called by ``echojax.sharding.initialize_distributed``), so the same command runs on
every node. Checkpoints must go to a filesystem all nodes share.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

TEMPLATE = """#!/bin/bash
#SBATCH --job-name={job_name}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={gpus_per_node}
#SBATCH --cpus-per-task={cpus}
#SBATCH --time={time}
#SBATCH --output={log_dir}/%x-%j.out
{extra}
set -euo pipefail
cd {repo}
source .venv/bin/activate
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.9
srun {command}
"""


def render(command: list[str], *, nodes: int = 1, gpus_per_node: int = 8, job_name: str = "echojax",
           cpus: int = 16, time: str = "24:00:00", repo: str | Path = ".", log_dir: str = "slurm_logs",
           extra: str = "") -> str:
  return TEMPLATE.format(job_name=job_name, nodes=nodes, gpus_per_node=gpus_per_node, cpus=cpus, time=time,
                         repo=Path(repo).resolve(), log_dir=log_dir, extra=extra, command=shlex.join(command))


def write_script(path: str | Path, command: list[str], **kwargs) -> Path:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(render(command, **kwargs))
  return path


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  own, train_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
  p = argparse.ArgumentParser(prog="python -m launch.slurm", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--nodes", type=int, default=1)
  p.add_argument("--gpus-per-node", type=int, default=8)
  p.add_argument("--time", default="24:00:00")
  p.add_argument("--job-name", default="echojax")
  p.add_argument("--script", default="slurm_logs/echojax.sbatch")
  p.add_argument("--submit", action="store_true")
  args = p.parse_args(own)
  path = write_script(args.script, ["python", "-m", "echojax.train", *train_args], nodes=args.nodes,
                      gpus_per_node=args.gpus_per_node, job_name=args.job_name, time=args.time)
  print(f"wrote {path}")
  if args.submit:
    sys.exit(subprocess.run(["sbatch", str(path)]).returncode)


if __name__ == "__main__":
  main()
