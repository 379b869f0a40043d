"""EchoNet-Dynamic ejection-fraction regression: the reference recipe of echonet/dynamic.

    python -m echojax.train --config echonet_ef            # the recipe (R(2+1)D-18, 32 frames, period 2)
    python -m echojax.train --config echonet_ef:smoke      # seconds: width-8 model, 8 frames, 28 px, 4 steps
    python -m echojax.train --config echonet_ef:demo       # learns on the synthetic phantoms in CPU minutes
    python -m echojax.train --config echonet_ef:model=r3d_18,frames=16

Recipe: R(2+1)D-18 from scratch (echojax loads no pretrained weights), clips of 32 frames taken every 2nd frame,
random 12-pixel pad + crop, SGD lr 1e-4 momentum 0.9 weight decay 1e-4, lr x0.1 every 15 epochs for 45 epochs,
batch 20, MSE on EF with the output bias initialised to the train-split EF mean; validation every epoch picks the
best checkpoint by MAE. Evaluate with all clips (test-time augmentation):
``python -m echojax.evaluate --workdir workdirs/echonet_ef --split test --clips all``.

``data.data_dir`` empty = the synthetic EchoNet-Dynamic phantom set (made once into the cache); point it at a
folder prepared by ``python -m echojax.data.prepare echonet_dynamic --manual-dir EchoNet-Dynamic --data-dir DIR``
for the real data.
"""

from __future__ import annotations

import ml_collections

from echojax.config import parse_arg


def echonet_data(a) -> ml_collections.ConfigDict:
  """EchoNet-Dynamic clips as echonet/dynamic samples them (shared with ef_classification)."""
  return ml_collections.ConfigDict({
      "name": "echonet_dynamic", "builder_config": str(a.size), "frames": a.frames, "period": a.period,
      "batch_size": a.batch_size, "normalize": "device", "augment": {"pad": 12 * a.size // 112}})


def reference_training(c: ml_collections.ConfigDict, a, *, best_metric: str, best_mode: str) -> None:
  """The echonet/dynamic optimisation (SGD 1e-4, momentum 0.9, wd 1e-4, x0.1 every 15 epochs); the schema's
  default validation every epoch chooses the best checkpoint by ``best_metric`` (shared with ef_classification)."""
  c.optim = ml_collections.ConfigDict({"name": "sgd", "lr": 1e-4, "momentum": 0.9, "weight_decay": 1e-4,
                                       "schedule": "step", "decay_every_epochs": 15.0})
  c.train = ml_collections.ConfigDict({"num_epochs": float(a.epochs)})
  c.eval = ml_collections.ConfigDict({"best_metric": best_metric, "best_mode": best_mode})


def smoke(c: ml_collections.ConfigDict, model_kwargs: dict) -> None:
  """Seconds on CPU (used by tests): 28 px, 8 frames, 32 phantoms, 4 steps, one validation at the end."""
  c.data.update(builder_config="28", frames=8, batch_size=8, augment={"pad": 2}, synthetic_num=32)
  c.model.kwargs = model_kwargs
  c.train = ml_collections.ConfigDict({"num_steps": 4, "log_every": 2, "checkpoint_every": 2,
                                       "checkpoint_every_epochs": 0.0})
  c.evals = {"val": {"every_steps": 4, "every_epochs": 0.0}}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse_arg(arg, smoke=False, demo=False, model="r2plus1d_18", frames=32, period=2, size=112, width=64,
                batch_size=20, epochs=45)
  c = ml_collections.ConfigDict()
  c.task = ml_collections.ConfigDict({"kind": "ef_regression", "target_key": "ef", "output_bias": None,
                                      "thresholds": [35.0, 40.0, 45.0, 50.0]})
  c.data = echonet_data(a)
  c.model = ml_collections.ConfigDict({"name": a.model, "kwargs": {"width": a.width}})
  reference_training(c, a, best_metric="mae", best_mode="min")

  if a.smoke:
    smoke(c, {"width": 8})
  elif a.demo:  # learns EF on the synthetic phantoms in a few CPU minutes
    # 8 frames every 8th span ~1-3 phantom beats, so each clip holds an end-diastole and an end-systole.
    # Measured (2-core CPU shared with other jobs, 1 device): 10.7 min wall / 4.7 CPU-min; best val R2 0.70;
    # test (all clips) MAE 5.7, R2 0.68, AUROC(EF<50) 0.90.
    c.data.update(builder_config="28", frames=8, period=8, batch_size=16, augment={"pad": 2})
    c.model.kwargs = {"width": 16}
    c.optim.update(name="adamw", lr=3e-3, weight_decay=1e-4, schedule="cosine", warmup_steps=20, grad_clip=1.0)
    c.train.update(num_epochs=20.0, log_every=5)
    c.evals = {"val": {"every_epochs": 4.0}}
  return c
