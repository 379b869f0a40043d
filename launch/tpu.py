"""Cloud TPU VM launcher: runs the same train command on every worker of a TPU VM slice.

    python -m launch.tpu --tpu NAME --zone ZONE [--setup] -- --config video_vit --workdir gs://bucket/run

On a multi-host slice every worker runs the identical command; ``jax.distributed.initialize()`` (called by
``echojax.sharding.initialize_distributed``) finds the peers from the TPU metadata, each process loads its own
shard of the data, and the global batch is assembled with ``jax.make_array_from_process_local_data``. ``--setup``
first clones nothing: it copies this checkout to the workers with ``gcloud ... scp`` and installs it with the
``tpu`` extra. This module only builds and (with ``--run``) executes gcloud commands; it needs the gcloud CLI.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

REMOTE_DIR = "~/echojax"


def command(tpu: str, zone: str, train_cmd: list[str], remote_dir: str = REMOTE_DIR) -> str:
  """The gcloud command that runs ``train_cmd`` on all workers of ``tpu``."""
  inner = f"cd {remote_dir} && " + shlex.join(train_cmd)
  return shlex.join(["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu, f"--zone={zone}", "--worker=all",
                     f"--command={inner}"])


def setup_commands(tpu: str, zone: str, remote_dir: str = REMOTE_DIR) -> list[str]:
  return [
      shlex.join(["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse", ".", f"{tpu}:{remote_dir}",
                  f"--zone={zone}", "--worker=all"]),
      shlex.join(["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu, f"--zone={zone}", "--worker=all",
                  f"--command=cd {remote_dir} && python3 -m pip install -q -e '.[tpu]'"]),
  ]


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  own, _, train_args = (argv[:argv.index("--")], None, argv[argv.index("--") + 1:]) if "--" in argv else (argv, None, [])
  p = argparse.ArgumentParser(prog="python -m launch.tpu", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--tpu", required=True)
  p.add_argument("--zone", required=True)
  p.add_argument("--setup", action="store_true", help="copy the checkout to the workers and install first")
  p.add_argument("--run", action="store_true", help="execute the commands (default: print them)")
  args = p.parse_args(own)
  cmds = (setup_commands(args.tpu, args.zone) if args.setup else [])
  cmds.append(command(args.tpu, args.zone, ["python3", "-m", "echojax.train", *train_args]))
  for c in cmds:
    print(c)
    if args.run and subprocess.run(c, shell=True).returncode != 0:
      sys.exit(1)


if __name__ == "__main__":
  main()
