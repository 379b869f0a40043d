"""The one trainer for every task.

    python -m echojax.train --config NAME[:ARG] [--config.key=value ...] [--workdir DIR] [--allow-config-change]

NAME is ``experiments/NAME.py`` (``get_config(ARG)``); ARG is e.g. ``smoke``, ``demo`` or
``model=resnet18,size=56,weighted``. The default workdir is ``workdirs/NAME[_ARG]``, so rerunning the same
command resumes the same run (workdir latest checkpoint -> ``config.init_from`` -> scratch). A resume with a config
that differs from the latest checkpoint's stops (listing the keys) unless ``--allow-config-change``.

A task (echojax/tasks) supplies the head size, loss and metrics; the config supplies model, data, optimizer, mesh
and sharding rules. The step is one ``jax.jit`` with NamedSharding in/out shardings and a donated state; the
state is created already sharded; the RNG of step s is ``fold_in(key(seed), s)`` so a resumed run repeats an
uninterrupted one exactly. The host syncs only at logging / eval / checkpoint steps; a non-finite loss or
gradient in the window stops the run there, before anything is evaluated or saved. ``data.device_prefetch``
batches are put onto the devices ahead of their step (checkpoints record the data position after the last batch
trained on); ``train.profile_steps`` > 0 writes a ``jax.profiler`` trace to ``<workdir>/profile/``.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (one JSON object per log/eval line), TensorBoard
events (``tb/``), ``checkpoints/`` and ``best/`` (orbax), ``profile/`` when profiling.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm import tqdm

from echojax import config as config_lib
from echojax import sharding, tasks
from echojax.checkpoint import (WEIGHTS, Checkpointer, PreemptionFlag, abstract_like, merge_init,
                                restore_init_from)
from echojax.errors import UserError, cli_main
from echojax.evaluate import _every, check_evaluations, periodic_evals
from echojax.feed import DataState, HostBatches, Profiler, device_batches, input_spec
from echojax.models import layers
from echojax.optim import make_optimizer
from echojax.run import (build_model, enable_compilation_cache, make_loader, make_model_input,
                         model_kwargs, pool_outputs, setup_logging, variable_shardings)
from echojax.workdir import MetricsWriter, _scalars, check_resume_config, check_workdir, write_config

log = logging.getLogger("echojax.train")

State = dict[str, Any]  # {"step", "params", "batch_stats", "opt_state"}


# ----------------------------------------------------------------------------------------------------------------
# Pieces built from the config


def resolve_data(config: ml_collections.ConfigDict) -> None:
  """Empty ``config.data.data_dir`` -> the synthetic phantom set (generated + prepared once into the cache, with
  progress and a log line); otherwise checks that the named dataset was prepared there."""
  from echojax.data import datasets
  from echojax.data.prepare import ensure_synthetic

  name = config.data.name
  builder_config = config.data.builder_config or config.data.config
  if not config.data.data_dir:
    data_dir = ensure_synthetic(name, builder_config, num=config.data.synthetic_num,
                                         seed=int(config.data.synthetic_seed))
    log.info("config.data.data_dir is empty: training on the synthetic %s phantom set in %s", name, data_dir)
    with config.unlocked():
      config.data.data_dir = str(data_dir)
    return
  info = getattr(datasets, "DATASETS", {}).get(name)
  if info is not None and not (Path(config.data.data_dir) / name).is_dir():
    raise UserError(
        f"config.data.data_dir={config.data.data_dir!r} has no prepared {name!r} dataset (looked for "
        f"{Path(config.data.data_dir) / name}). Prepare it with: python -m echojax.data.prepare {name} "
        f"--manual-dir RAW_FOLDER --data-dir {config.data.data_dir}" +
        (f" --config {builder_config}" if builder_config else "") +
        " (or leave data.data_dir empty to use the synthetic phantom set)")


def trainable_regex(config) -> str | None:
  """``config.optim.trainable``: regex over parameter paths for partial fine-tuning; empty/None = all train."""
  return config.optim.trainable or None


def print_param_summary(config, state: State) -> None:
  """Keras-style parameter summary (per top-level module; Total / Trainable / Non-trainable) at the run's start."""
  from echojax.models import summary
  regex = trainable_regex(config)
  mask = summary.trainable_mask(state["params"], regex) if regex else None
  if jax.process_index() == 0:
    print(summary.param_summary({"params": state["params"], "batch_stats": state["batch_stats"]}, mask,
                                name=config.model.name, max_depth=2), flush=True)


def with_frozen(tx, config):
  """``config.optim.trainable`` (optional): only matching parameters train;
  others get exactly zero updates (echojax.models.summary.freeze)."""
  regex = trainable_regex(config)
  if not regex:
    return tx
  from echojax.models import summary
  return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()},
                               lambda params: summary.trainable_labels(summary.trainable_mask(params, regex)))


def steps_per_epoch(config, loader) -> int:
  if config.train.steps_per_epoch:
    return int(config.train.steps_per_epoch)
  for attr in ("steps_per_epoch", "num_batches"):
    if hasattr(loader, attr):
      return int(getattr(loader, attr))
  if hasattr(loader, "__len__"):
    return len(loader)
  if hasattr(loader, "num_examples"):
    return max(1, loader.num_examples // config.data.batch_size)
  raise UserError("cannot tell the epoch length from the loader; set --config.train.steps_per_epoch=N")


def check_train_config(config) -> None:
  """Loop settings that would train nothing or divide by zero are named before anything starts."""
  t = config.train
  bad = [(f, v, want) for f, v, want in
         [("num_steps", t.num_steps, ">= 0 (0 = use num_epochs)"), ("num_epochs", t.num_epochs, ">= 0"),
          ("steps_per_epoch", t.steps_per_epoch, ">= 0 (0 = the loader's)"), ("log_every", t.log_every, ">= 1"),
          ("checkpoint_every", t.checkpoint_every, ">= 0"), ("checkpoint_every_epochs", t.checkpoint_every_epochs,
                                                            ">= 0"),
          ("keep_checkpoints", t.keep_checkpoints, ">= 1"), ("early_stopping_patience", t.early_stopping_patience,
                                                            ">= 0"),
          ("profile_steps", t.profile_steps, ">= 0 (0 = no profile)"), ("profile_start", t.profile_start, ">= 0")]
         if v is not None and v < (1 if want.startswith(">= 1") else 0)]
  if bad:
    f, v, want = bad[0]
    raise UserError(f"config.train.{f}={v} must be {want} (--config.train.{f}=...)")
  if config.data.device_prefetch is None or config.data.device_prefetch < 0:
    raise UserError(f"config.data.device_prefetch={config.data.device_prefetch} must be >= 0 (0 = off; "
                    "--config.data.device_prefetch=2)")
  if not t.num_steps and not t.num_epochs:
    raise UserError("config.train.num_steps and config.train.num_epochs are both 0, so nothing would train; set "
                    "--config.train.num_steps=N or --config.train.num_epochs=E")


def total_steps(config, spe: int) -> int:
  if config.train.num_steps:
    return int(config.train.num_steps)
  return int(math.ceil(config.train.num_epochs * spe))


def train_targets(config, loader, keys) -> dict[str, np.ndarray]:
  """Targets of every train record (class frequencies, EF mean) from the loader's ``targets(keys)``."""
  if hasattr(loader, "targets"):
    return {k: np.asarray(v) for k, v in loader.targets(keys).items()}
  raise UserError(f"the task needs train-split targets {keys} but the loader has no targets(); set them in the "
                  f"config (config.task.output_bias / config.task.class_weights)")


# ----------------------------------------------------------------------------------------------------------------
# State and steps


def make_init_fn(model, tx, task, sample_x: jax.ShapeDtypeStruct, seed: int) -> Callable[[], State]:
  """init() -> fresh state (run under jit with out_shardings so parameters are created already sharded)."""

  def init() -> State:
    x = jnp.zeros(sample_x.shape, sample_x.dtype)
    variables = model.init({"params": jax.random.key(seed), "dropout": jax.random.key(seed + 1)}, x, train=False)
    params = task.init_params(variables["params"])
    return {"step": jnp.zeros((), jnp.int32), "params": params,
            "batch_stats": variables.get("batch_stats", {}), "opt_state": tx.init(params)}

  return init


def state_shardings(abstract: State, mesh, rules) -> State:
  """Params/batch_stats by the config's rules (matched against paths like "conv1/kernel"); the optimizer's
  copies of params (momentum, Adam moments) follow the same rules by matching the tail of their paths;
  scalars (step, counts) are replicated."""
  tail_rules = [(rx if rx.startswith(".*") else ".*" + rx, spec) for rx, spec in rules]
  return {"step": sharding.replicated(mesh), **variable_shardings(abstract, mesh, rules),
          "opt_state": sharding.param_shardings(abstract["opt_state"], mesh, tail_rules)}


def make_train_step(model, tx, task, config, schedule) -> Callable[[State, dict], tuple[State, dict]]:
  """One SGD step. The new state is returned as it is, also after a non-finite loss or gradient: that step's
  ``finite`` metric is False, and the loop (:func:`train`) stops with a UserError at its next host sync, before
  anything of that window is evaluated or saved, so the state it leaves in memory is never used. (A per-step
  ``where(finite, new, old)`` over params, batch_stats and optimizer state would read and write the whole state
  once more every step to protect a state the run then throws away.)"""
  model_input, seed = make_model_input(config), int(config.seed)

  def step_fn(state: State, batch: dict) -> tuple[State, dict]:
    rng = jax.random.fold_in(jax.random.key(seed), state["step"])

    def loss_fn(params):
      (out, _aux), new_vars = model.apply({"params": params, "batch_stats": state["batch_stats"]}, model_input(batch),
                                          train=True, rngs={"dropout": rng}, mutable=["batch_stats"],
                                          **model_kwargs(model, batch))
      loss, extras = task.loss(pool_outputs(out, batch), batch)
      return loss, (extras, new_vars.get("batch_stats", state["batch_stats"]))

    (loss, (extras, new_bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, new_opt = tx.update(grads, state["opt_state"], state["params"])
    new_params = optax.apply_updates(state["params"], updates)
    gnorm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(gnorm)
    new_state = {"step": state["step"] + 1, "params": new_params, "batch_stats": new_bs, "opt_state": new_opt}
    metrics = {"loss": loss, "grad_norm": gnorm, "lr": schedule(state["step"]), "finite": finite, **extras}
    return new_state, metrics

  return step_fn


def setup_state(config, model, tx, task, mesh, sample_x, ckpt: Checkpointer | None, init_from=None):
  """(state on the mesh, shardings, restored meta or None): resume latest -> init_from -> scratch."""
  init = make_init_fn(model, tx, task, sample_x, int(config.seed))
  abstract = jax.eval_shape(init)
  shardings = state_shardings(abstract, mesh, [tuple(r) for r in config.sharding.rules])
  if ckpt is not None and ckpt.latest_step() is not None:
    restored = ckpt.restore("latest", tuple(abstract), abstract_like(abstract, shardings))
    log.info("resumed from %s/checkpoints step %d", ckpt.workdir, restored.step)
    return restored.tree, shardings, restored.meta
  state = jax.jit(init, out_shardings=shardings)()
  imagenet = config.init.imagenet
  if imagenet:  # config.init.imagenet: local ResNet ImageNet weights into the backbone (scratch runs only)
    from echojax.pretrained import load_imagenet_resnet
    keys = ("params", "batch_stats")
    loaded, _report = load_imagenet_resnet(imagenet, jax.device_get({k: state[k] for k in keys}))
    state = {**state, **jax.device_put({k: loaded[k] for k in keys}, {k: shardings[k] for k in keys})}
  if init_from and config.init.reinit:  # transfer: a new head / new layers keep their fresh initialisation
    merged, counts = merge_init(jax.device_get({k: state[k] for k in WEIGHTS}), restore_init_from(init_from, None),
                                config.init.reinit, init_from)
    state = {**state, **jax.device_put(merged, {k: shardings[k] for k in WEIGHTS})}
    log.info("initialised from %s: %d tensors loaded, %d re-initialised (init.reinit=%r), %d of the checkpoint "
             "unused", init_from, counts["loaded"], counts["reinit"], config.init.reinit, counts["unused"])
  elif init_from:
    loaded = restore_init_from(init_from, abstract_like({k: abstract[k] for k in WEIGHTS},
                                                        {k: shardings[k] for k in WEIGHTS}))
    state = {**state, "params": loaded["params"], "batch_stats": loaded["batch_stats"]}
    log.info("initialised params and batch_stats from %s", init_from)
  return state, shardings, None


# ----------------------------------------------------------------------------------------------------------------
# Data constants recorded in config.json


def record_data_stats(config) -> None:
  """Writes the prepared training data's normalisation statistics and stored frame side into
  ``config.data.norm_stats`` (so config.json, and with it the workdir, carries what evaluate on other data and
  predict on users' files need, without the training data's prepared folder). Custom loaders have none."""
  from echojax.data import datasets, pipeline

  if config.data.norm_stats or datasets.custom_loader(config.data.name) is not None:
    return
  stats = pipeline.record_stats(config.data)
  with config.unlocked():
    del config.data["norm_stats"]  # None -> a dict
    config.data.norm_stats = stats


# ----------------------------------------------------------------------------------------------------------------
# The loop


def train(config: ml_collections.ConfigDict, workdir: str | Path, *, allow_config_change: bool = False) -> dict:
  """Trains ``config`` in ``workdir`` (resuming when it holds checkpoints). Returns the last metrics records
  ``{"train": {...}, "val": {...}}``.

  Nothing an earlier run left is replaced silently: a workdir with metrics or a best checkpoint but no
  checkpoints/ stops (:func:`check_workdir`); a resume whose config differs from the latest checkpoint's stops
  unless ``allow_config_change`` (then the old config is kept in ``config_history/``); ``config.json`` is written
  once the state is built (restored or initialised), so a failed start leaves it as it was."""
  from echojax import evaluate  # shares the eval code with echojax.evaluate

  workdir = Path(workdir)
  check_train_config(config)
  check_workdir(workdir)
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except (FileExistsError, NotADirectoryError) as e:
    raise UserError(f"--workdir {workdir} cannot be created ({e}); give a folder path") from None
  enable_compilation_cache()
  resolve_data(config)
  mesh = sharding.make_mesh(config.mesh)
  sharding.check_batch_size(config.data.batch_size, mesh, "data.batch_size")
  if any(e.every_steps or e.every_epochs for e in config.evals.values()):
    sharding.check_batch_size(config.eval.batch_size, mesh, "eval.batch_size")
  task = tasks.get_task(config)
  loader = make_loader(config, config.data.train_split, train=True)
  if task.needs_train_targets():
    task.prepare(train_targets(config, loader, task.target_keys))
    with config.unlocked():  # recorded in config.json, so evaluate and resumes use the same constants
      for k, v in task.prepared_constants().items():
        if k in config.task:
          del config.task[k]  # the type changes ("balanced" -> list of weights)
        config.task[k] = v
  record_data_stats(config)
  ckpt = Checkpointer(workdir, keep=int(config.train.keep_checkpoints))
  try:  # a failed start closes the checkpointer (orbax's async threads) before raising
    stored = None
    if ckpt.latest_step() is not None:  # a resume: the latest checkpoint's config is what its weights were trained on
      resume_step, resume_meta = ckpt.restore_meta("latest")
      stored = resume_meta.get("config")
      if stored is None and (workdir / "config.json").is_file():  # a checkpoint without its config: config.json's
        stored = json.loads((workdir / "config.json").read_text())
      if stored is not None:
        if not (stored.get("data") or {}).get("norm_stats"):  # a run from before the stats were recorded
          with config.unlocked():
            config.data.norm_stats = None
        check_resume_config(config, stored, resume_step, workdir, allow_config_change)
    model = build_model(config, task)
    spe = steps_per_epoch(config, loader)
    num_steps = total_steps(config, spe)
    tx, schedule = make_optimizer(config.optim, spe, num_steps)
    tx = with_frozen(tx, config)

    if ckpt.latest_step() is not None:
      ckpt.restore_data(loader)
    host = HostBatches(loader)
    sample_x = input_spec(config, loader, host)
    if sample_x.shape[0] * jax.process_count() != config.data.batch_size:
      raise UserError(f"the loader gave a per-process batch of {sample_x.shape[0]} but config.data.batch_size="
                      f"{config.data.batch_size} for {jax.process_count()} process(es)")
    state, shardings, meta = setup_state(config, model, tx, task, mesh, sample_x, ckpt, config.init_from)
    start = int(jax.device_get(state["step"]))
    print_param_summary(config, state)
    early = (meta or {}).get("early_stopping", {"best": None, "best_step": None, "bad_evals": 0})

    batch_sh = sharding.batch_sharding(mesh)
    step_fn = layers.jit(make_train_step(model, tx, task, config, schedule), in_shardings=(shardings, batch_sh),
                      out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=(0,))
    periodic = periodic_evals(config, spe)  # [(name, entry, every)]: the evaluations that run during training
    check_evaluations(config, spe)  # a missing split or bad override fails now, not at the first evaluation
    evaluator = evaluate.Evaluator(config, model, task, mesh, shardings) if periodic else None
    if jax.process_index() == 0:  # the state, model and evaluations are built: this run is what config.json says
      write_config(config, workdir, start, stored)
    writer = MetricsWriter(workdir, start if meta else None)
    preempt = PreemptionFlag()
    log_every = int(config.train.log_every)
    ckpt_every = _every(config.train, spe, "checkpoint_every", "checkpoint_every_epochs") or num_steps
    patience = int(config.train.early_stopping_patience)
    best_metric = config.eval.best_metric or task.best_metric
    best_mode = config.eval.best_mode or task.best_mode
    last = {"train": None, **{name: None for name, _, _ in periodic}}
    batches = device_batches(host, batch_sh, int(config.data.device_prefetch), num_steps - start)
    profiler = Profiler(config, workdir, start, num_steps)
  except BaseException:
    ckpt.close()
    raise

  def make_meta(step: int) -> dict:
    return {"step": step, "config": json.loads(config_lib.to_json(config)), "early_stopping": early}

  pending, window_start, t0 = [], start, time.perf_counter()
  bar = tqdm(total=num_steps, initial=start, desc="train", unit="step", dynamic_ncols=True,
             disable=jax.process_index() != 0)
  step, stop_reason = start, None
  try:
    while step < num_steps:
      profiler.before(step)
      batch, data_state = next(batches)  # on the devices already; the data position right after this batch
      state, m = step_fn(state, batch)
      pending.append(m)
      step += 1
      profiler.after(step, state)
      bar.update(1)
      is_last = step == num_steps
      preempted = preempt.check(step)  # at every step: hosts agree on the step to stop at
      do_log = step % log_every == 0 or is_last or preempted
      due = [(n, e) for n, e, every in periodic if step % every == 0 or is_last]
      do_eval = bool(due)
      do_ckpt = step % ckpt_every == 0 or is_last or preempted or do_eval
      if not (do_log or do_eval or do_ckpt):
        continue
      # Host sync point: pull the window's metrics, stop on non-finite values before anything is evaluated or
      # saved (the step keeps no old state: after a non-finite step the state in memory is garbage).
      host = jax.device_get(pending)
      bad = [(s, h) for s, h in zip(range(window_start + 1, step + 1), host) if not bool(h["finite"])]
      if bad:
        ckpt.wait()
        good = ckpt.latest_step()
        raise UserError(
            f"non-finite loss or gradient at step {bad[0][0]} (loss={float(bad[0][1]['loss'])}, grad norm="
            f"{float(bad[0][1]['grad_norm'])}); "
            "stopped. " + (f"The last good checkpoint is step {good} in {workdir / 'checkpoints'}. "
                           if good is not None else "No checkpoint was saved yet, so a rerun starts from scratch. ") +
            f"Lower the learning "
            f"rate (--config.optim.lr, now {config.optim.lr}) or enable --config.optim.grad_clip")
      elapsed = time.perf_counter() - t0
      rec = {k: float(np.mean([h[k] for h in host])) for k in host[0] if k != "finite"}
      rec.update(step=step, split="train", epoch=round(step / spe, 3),
                 clips_per_s=round(len(host) * config.data.batch_size / max(elapsed, 1e-9), 2))
      pending, window_start, t0 = [], step, time.perf_counter()
      if do_log:
        writer.write(rec)
        last["train"] = rec
        bar.set_postfix(loss=f"{rec['loss']:.4g}", clips_s=f"{rec['clips_per_s']:.1f}")
      improved = False
      for name, e in due:
        vm = evaluator.run(state, e.split, clips=e.clips, bootstrap=int(e.bootstrap), data=e.data, name=name)
        vrec = {"step": step, "split": e.split, **({"eval": name} if name != "val" else {}), **_scalars(vm)}
        writer.write(vrec)
        last[name] = vrec
        if not e.pick_best:
          continue
        if best_metric not in vrec:
          raise UserError(f"config.eval.best_metric={best_metric!r} is not among the validation metrics "
                          f"{sorted(vrec)}")
        value = vrec[best_metric]  # None when undefined (e.g. AUROC of a one-class split): never "better"
        better = value is not None and (early["best"] is None or (
            value < early["best"] if best_mode == "min" else value > early["best"]))
        if better:
          early.update(best=value, best_step=step, bad_evals=0)
          improved = True
        else:
          early["bad_evals"] += 1
        t0 = time.perf_counter()  # eval time is not training throughput
      if do_ckpt:  # the data position after the last batch trained on, not after the ones prefetched
        ckpt.save(step, state, make_meta(step), data=DataState(data_state))
        if improved:
          ckpt.save(step, state, make_meta(step), data=DataState(data_state), best=True)
      if patience and early["bad_evals"] >= patience:
        stop_reason = f"early stopping: {best_metric} has not improved for {patience} evaluations " \
                      f"(best {early['best']} at step {early['best_step']})"
        break
      if preempted:
        stop_reason = f"preempted (SIGTERM) at step {step}, checkpoint saved; rerun the same command to resume"
        break
  finally:
    bar.close()
    try:
      profiler.stop()  # a run that ended inside the profiled steps
    finally:
      try:  # a checkpoint that could not be written raises its one UserError here or at the save (not both)
        ckpt.wait()
      finally:
        try:
          ckpt.close()
        finally:
          writer.close()
          preempt.restore()
  if stop_reason:
    log.info(stop_reason)
    print(stop_reason, file=sys.stderr)
  return last



# ----------------------------------------------------------------------------------------------------------------
# CLI


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = argparse.ArgumentParser(prog="python -m echojax.train", description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True, help="NAME[:ARG], NAME in experiments/ "
                      f"({', '.join(config_lib.list_configs())})")
  parser.add_argument("--workdir", default=None, help="run folder (default workdirs/NAME[_ARG]; reruns resume)")
  parser.add_argument("--allow-config-change", action="store_true",
                      help="resume even though the config differs from the latest checkpoint's (e.g. more steps); "
                      "the old config is kept in WORKDIR/config_history/")
  args, rest = parser.parse_known_args(argv)
  overrides = []
  for item in rest:
    if not item.startswith("--config.") or "=" not in item:
      raise UserError(f"unrecognised argument {item!r}; overrides look like --config.optim.lr=3e-4")
    overrides.append(item[len("--config."):])
  return args, overrides


@cli_main
def main(argv: list[str] | None = None) -> None:
  setup_logging()
  args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
  config = config_lib.load_config(args.config, overrides)
  sharding.initialize_distributed()
  workdir = Path(args.workdir) if args.workdir else config_lib.default_workdir(args.config)
  log.info("workdir %s", workdir)
  last = train(config, workdir, allow_config_change=args.allow_config_change)
  for line in final_lines(config, workdir, last):  # every process: each host's own view of the (global) metrics
    print(line, flush=True)
  if jax.process_index() == 0:
    for line in at_end_reports(config, workdir):
      print(line, flush=True)


def final_lines(config, workdir: str | Path, last: dict) -> list[str]:
  """A short headline per split of ``train()``'s last records, e.g. ``val step 4: loss 30.1, mae 5.1 (best 4.9
  at step 2)`` (the best over the run's metrics.jsonl, for the evaluation that keeps the best checkpoint), and
  where the full metrics are."""
  path = Path(workdir) / "metrics.jsonl"
  records = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []
  task = tasks.get_task(config)
  best_metric = config.eval.best_metric or task.best_metric
  pick = min if (config.eval.best_mode or task.best_mode) == "min" else max
  fmt = lambda v: f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
  lines = []
  for name, rec in last.items():
    if not rec:
      continue
    entry = config.evals.get(name) if name != "train" else None
    label = name if entry is None or entry.split == name else f"{name} ({entry.split})"
    parts = [f"loss {fmt(rec['loss'])}"] if "loss" in rec else []
    if entry is not None and best_metric != "loss" and best_metric in rec:
      parts.append(f"{best_metric} {fmt(rec[best_metric])}")
    if entry is not None and entry.pick_best:
      mine = [r for r in records if r.get("split") == entry.split and r.get("eval", "val") == name
              and r.get(best_metric) is not None]
      if mine and parts:
        best = pick(mine, key=lambda r: r[best_metric])
        parts[-1] += f" (best {fmt(best[best_metric])} at step {best['step']})"
    lines.append(f"{label} step {rec['step']}: " + ", ".join(parts))
  if lines:
    lines.append(f"all metrics: {path}")
  return lines


def at_end_reports(config, workdir: str | Path) -> list[str]:
  """The ``config.evals`` entries with ``at_end`` (the view demos set one for the test split): each scores the
  run's best checkpoint through ``python -m echojax.evaluate``'s own code (outputs in WORKDIR/eval/<split>_best)
  and gives evaluate's one-line headline, e.g. accuracy and micro/macro-F1 against chance. Clips per video are the
  entry's ``clips`` (the view demos: "all", as evaluate's default), so the line the run prints is the one evaluate
  prints for the same checkpoint."""
  from echojax import evaluate

  lines = []
  for name, e in sorted(config.evals.items()):
    if e.at_end:
      summary = evaluate.evaluate_workdir(workdir, split=e.split, clips=e.clips, bootstrap=int(e.bootstrap),
                                          data=e.data.to_dict() if hasattr(e.data, "to_dict") else dict(e.data),
                                          out_dir=None if name in ("val", "test") else
                                          Path(workdir) / "eval" / f"{name}_best")
      lines.append(evaluate.headline(summary))
  return lines


if __name__ == "__main__":
  main()
