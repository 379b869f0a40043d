"""Worker for tests/test_multihost.py: ONE process of a two-process job that saves the latest and the best
checkpoint of the same step back to back, as the trainer does when a validation improves.

    python tests/helpers/workers/checkpoint_worker.py PROCESS_ID PORT WORKDIR STEPS

Prints ``done`` when every save has committed. Each process has 2 fake CPU devices; collectives go over gloo.
"""

from __future__ import annotations

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"  # before JAX starts

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402


def main() -> None:
  pid, port, workdir, steps = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
  from echojax.checkpoint import Checkpointer

  mesh = jax.make_mesh((4,), ("data",))
  w = jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")), np.full((2, 8), pid, np.float32))
  state = {"w": w, "b": jax.device_put(np.zeros(3, np.float32), NamedSharding(mesh, P()))}
  ckpt = Checkpointer(workdir, keep=2)
  for step in range(1, steps + 1):
    ckpt.save(step, state, {"step": step})
    ckpt.save(step, state, {"step": step}, best=True)
  ckpt.wait()
  ckpt.close()
  print("done", flush=True)


if __name__ == "__main__":
  main()
