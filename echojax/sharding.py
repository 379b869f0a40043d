"""Device mesh, parameter sharding rules and global batches.

* ``make_mesh(config.mesh)``: a Mesh from ``[("data", -1)]`` or ``[("data", -1), ("fsdp", 2)]`` (-1 = the rest).
* ``param_shardings(abstract_tree, mesh, rules)``: big_vision-style rules, a list of ``(regex, spec)`` matched
  against the "/"-joined parameter path; the first match wins. ``spec`` is ``None`` / ``"replicate"``
  (replicated), ``"fsdp"`` (shard the largest dimension divisible by the fsdp axis size; replicate if none is), or
  a tuple used as a PartitionSpec. Unmatched leaves are replicated.
* ``batch_sharding(mesh)``: the leading (batch) dimension split over every mesh axis (data parallel + fsdp).
* ``global_batch(batch, sharding)``: per-process numpy batch -> global jax.Array
  (``jax.make_array_from_process_local_data``), so the same code runs on one host or many.
* ``initialize_distributed()``: the one wrapper around ``jax.distributed.initialize()``.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from echojax.errors import UserError

log = logging.getLogger(__name__)


def initialize_distributed() -> None:
  """Starts multi-process JAX when launched by a multi-host launcher; a no-op for one process.

  Cluster auto-detection (Cloud TPU, SLURM, ...) is JAX's; ``ECHOJAX_COORDINATOR`` / ``ECHOJAX_NUM_PROCESSES`` /
  ``ECHOJAX_PROCESS_ID`` force explicit values (used by launch/ scripts).
  """
  if os.environ.get("ECHOJAX_COORDINATOR"):
    jax.distributed.initialize(
        coordinator_address=os.environ["ECHOJAX_COORDINATOR"],
        num_processes=int(os.environ["ECHOJAX_NUM_PROCESSES"]),
        process_id=int(os.environ["ECHOJAX_PROCESS_ID"]),
    )
  elif any(k in os.environ for k in ("SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES", "JAX_COORDINATOR_ADDRESS")):
    try:
      jax.distributed.initialize()
    except (RuntimeError, ValueError) as e:  # e.g. a single-task SLURM job: run as one process.
      log.info("jax.distributed.initialize() not used: %s", e)


def make_mesh(mesh_spec: Sequence[Sequence[Any]], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Mesh from ``[(axis_name, size), ...]``; one size may be -1 (all remaining devices)."""
  devices = list(jax.devices() if devices is None else devices)
  names = [str(a) for a, _ in mesh_spec]
  sizes = [int(s) for _, s in mesh_spec]
  known = int(np.prod([s for s in sizes if s != -1]))
  if sizes.count(-1) > 1 or known <= 0 or len(devices) % known:
    raise UserError(f"config.mesh {list(map(tuple, mesh_spec))} does not fit {len(devices)} devices: sizes must "
                    f"multiply to the device count (use -1 for at most one axis)")
  sizes = [len(devices) // known if s == -1 else s for s in sizes]
  if int(np.prod(sizes)) != len(devices):
    raise UserError(f"config.mesh {list(map(tuple, mesh_spec))} uses {int(np.prod(sizes))} devices but "
                    f"{len(devices)} are present; use -1 for the data axis")
  return Mesh(np.asarray(devices).reshape(sizes), names)


def path_str(path) -> str:
  """A pytree key path as "params/conv1/kernel"."""
  parts = []
  for k in path:
    parts.append(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))))
  return "/".join(parts)


def _spec_for(shape: tuple[int, ...], spec: Any, mesh: Mesh) -> P:
  if spec is None or spec == "replicate":
    return P()
  if spec == "fsdp":
    if "fsdp" not in mesh.shape:
      return P()
    n = mesh.shape["fsdp"]
    order = sorted(range(len(shape)), key=lambda i: -shape[i])
    for i in order:
      if shape[i] % n == 0 and shape[i] >= n:
        axes = [None] * len(shape)
        axes[i] = "fsdp"
        return P(*axes)
    return P()
  if isinstance(spec, (list, tuple)):
    return P(*spec)
  raise UserError(f"config.sharding.rules: unknown spec {spec!r}; use None, 'replicate', 'fsdp' or a tuple")


def param_shardings(tree: Any, mesh: Mesh, rules: Sequence[Sequence[Any]]) -> Any:
  """NamedShardings for every leaf of ``tree`` (arrays or ShapeDtypeStructs) by the first matching rule."""
  compiled = [(re.compile(r), s) for r, s in rules]

  def one(path, leaf):
    name = path_str(path)
    shape = tuple(getattr(leaf, "shape", ()))
    for rx, spec in compiled:
      if rx.fullmatch(name):
        return NamedSharding(mesh, _spec_for(shape, spec, mesh))
    return NamedSharding(mesh, P())

  return jax.tree_util.tree_map_with_path(one, tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batch dimension split over all mesh axes (data parallel across data x fsdp)."""
  return NamedSharding(mesh, P(tuple(mesh.axis_names)))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(global_batch: int, mesh: Mesh, field: str = "data.batch_size") -> None:
  """Fails before compiling when the global batch does not split evenly over devices and processes."""
  n = mesh.size
  if global_batch % n:
    raise UserError(f"config.{field}={global_batch} is not divisible by the {n} devices of the mesh; use a "
                    f"multiple of {n} (e.g. --config.{field}={max(n, global_batch // n * n)})")
  if global_batch % jax.process_count():
    raise UserError(f"config.{field}={global_batch} is not divisible by {jax.process_count()} processes")


def global_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Per-process numpy batch (this process's rows) -> global jax.Arrays sharded along the batch dimension."""
  return jax.tree_util.tree_map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def to_host(tree: Any) -> Any:
  """Fully-replicated / addressable arrays -> numpy (for logging and host-side metrics)."""
  return jax.tree_util.tree_map(lambda x: np.asarray(jax.device_get(x)), tree)
