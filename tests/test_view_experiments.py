"""View-classification experiments: every config (smoke, demo, full) loads and builds its model; one smoke train
step of every model under 8-device data parallelism; the ECG phase sampler reaches the pipeline through the
configs' loader; the fusion weighting mode is ``model.kwargs.mode``; evaluation writes per-sample gate weights."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echojax import sharding
from echojax.config import load_config
from echojax.errors import UserError
from echojax.optim import make_optimizer
from echojax.tasks import get_task
from echojax.models.summary import host_init
from echojax.run import build_model, enable_compilation_cache
from echojax.train import make_train_step, state_shardings

CONFIGS = ["video_vit", "view_image_effnetb2", "view_video_cnn_lstm", "view_video_resnet3d",
           "view_video_resnet3d:model=r2plus1d_18", "view_video_3dcnn", "view_video_spatiotemporal", "view_video_mhsa",
           "view_video_x3d"]
PER_FRAME = {"view_video_cnn_lstm", "view_video_spatiotemporal", "view_video_mhsa"}  # ECG phase sampling on by default


def _spec(name: str, variant: str | None = None) -> str:
  """``name[:args]`` with the variant added to its arguments: ("x:model=m", "smoke") -> "x:model=m,smoke"."""
  if variant is None:
    return name
  return f"{name},{variant}" if ":" in name else f"{name}:{variant}"


def _input_shape(config) -> tuple[int, ...]:
  """Batch input shape the pipeline gives for this config (resized size, or the builder config's stored size)."""
  stored = {"videos": 112, "videos_64": 64, "images": 112, "images_224": 224}[config.data.builder_config]
  s = config.data.size or stored
  if config.data.preset == "image":
    return (config.data.batch_size, s, s, 3)
  return (config.data.batch_size, config.data.frames, s, s, 3)


@functools.lru_cache(maxsize=None)
def _config(spec):
  return load_config(spec)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_variants_load_and_build(name):
  from experiments._views_common import CLASS_NAMES

  for spec in (_spec(name, "smoke"), _spec(name, "demo"), name):
    c = load_config(spec)
    assert c.task.kind == "classification" and c.task.num_classes == 11
    assert tuple(c.task.class_names) == CLASS_NAMES
    assert c.data.name == "echo_views" and c.data.data_dir == ""  # synthetic default
    assert c.data.input_key == ("image" if name == "view_image_effnetb2" else "video")
    assert c.data.frame_sampler == (f"ecg_phases_{c.data.frames}" if name in PER_FRAME else None), spec
    model = build_model(c, get_task(c))
    assert model.num_classes == 11
  smoke, demo, full = (load_config(_spec(name, v)) for v in ("smoke", "demo", None))
  assert smoke.train.num_steps <= 2 and demo.train.num_steps >= 100 and full.train.num_epochs >= 10
  # the full recipe is at real size, the demo learns on small phantoms
  assert full.data.builder_config in ("videos", "images_224") and full.data.size is None
  assert demo.data.size is not None and smoke.data.synthetic_num < demo.data.synthetic_num


def test_full_default_sizes_by_eval_shape():
  """The full recipes at real size: parameter counts of a few models without running them."""
  counts = {}
  for name in ("video_vit", "view_image_effnetb2", "view_video_spatiotemporal"):
    c = _config(name)
    model = build_model(c, get_task(c))
    shape = (1,) + _input_shape(c)[1:]
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
    counts[name] = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(v["params"]))
  # ViT-S/16x2 factorised: 12 spatial blocks (~21.3M) + 4 temporal blocks (~7.1M) + tubelet embedding
  assert 28.5e6 < counts["video_vit"] < 29.5e6, counts
  # torchvision EfficientNet-B2 is 9.11M with its 1000-way head (1408*1000+1000); with 11 classes 7.72M
  assert abs(counts["view_image_effnetb2"] - (9_109_994 - 1_409_000 + 1408 * 11 + 11)) < 1000, counts
  assert counts["view_video_spatiotemporal"] > 7.7e6 + 128 * 128 * 3 * 4, counts  # B2 backbone + TCN + two heads + gate


def test_video_vit_attention_arg_and_bad_args():
  assert load_config("video_vit:attention=joint").model.kwargs.attention == "joint"
  assert load_config("video_vit").model.kwargs.attention == "factorised"
  with pytest.raises(UserError, match="attention"):
    load_config("video_vit:attention=diagonal")
  with pytest.raises(UserError, match="ECG phase sampling"):
    load_config("view_video_spatiotemporal:frames=6")
  with pytest.raises(UserError, match="fusion mode|fixed weight"):
    load_config("view_video_spatiotemporal:mode=fixed:2")


def test_fusion_mode_is_one_field():
  """The weighting mode has one config field, model.kwargs.mode (the mode= argument sets it; the sweep overrides
  it); there is no second model.fusion copy to keep in step."""
  assert load_config("view_video_spatiotemporal:mode=fixed:0.5").model.kwargs.mode == "fixed:0.5"
  c = load_config("view_video_spatiotemporal:smoke", {"model.kwargs.mode": "learned"})
  assert c.model.kwargs.mode == "learned" and "fusion" not in c.model
  from echojax.config import to_json
  import json
  assert json.loads(to_json(c))["model"]["kwargs"]["mode"] == "learned"  # what evaluate rebuilds from


#: one config's train step stays in the fast tier; compiling the others' takes 14-50 s each
FAST_TRAIN_STEP = "view_video_3dcnn"


@pytest.mark.parametrize("name", [n if n == FAST_TRAIN_STEP else pytest.param(n, marks=pytest.mark.slow)
                                  for n in CONFIGS])
def test_smoke_train_step_data_parallel_8_devices(name):
  enable_compilation_cache()  # the trainer's persistent XLA cache: reruns of these steps skip most compiling
  assert len(jax.devices()) == 8
  config = load_config(_spec(name, "smoke"))
  task = get_task(config)
  model = build_model(config, task)
  tx, sched = make_optimizer(config.optim, 4, 10)
  mesh = sharding.make_mesh(config.mesh)
  assert dict(mesh.shape) == {"data": 8}
  shape = _input_shape(config)
  rng = np.random.default_rng(0)
  batch = {config.data.input_key: rng.normal(size=shape).astype(np.float32),
           "label": rng.integers(0, 11, shape[0]).astype(np.int32), "valid": np.ones(shape[0], bool)}
  # Variables drawn on the host (no jitted RNG init to compile; the trainer's own init is covered by the sweep
  # test's real runs), placed with the trainer's shardings.
  variables = host_init(model, jnp.zeros((1,) + shape[1:]), train=False)
  abstract = {"step": jnp.zeros((), jnp.int32), "params": variables["params"],
              "batch_stats": variables.get("batch_stats", {}), "opt_state": tx.init(variables["params"])}
  shardings = state_shardings(jax.eval_shape(lambda: abstract), mesh, [tuple(r) for r in config.sharding.rules])
  state = jax.device_put(abstract, shardings)
  before = jax.device_get(state["params"])
  bsh = sharding.batch_sharding(mesh)
  step = jax.jit(make_train_step(model, tx, task, config, sched), in_shardings=(shardings, bsh),
                 out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=(0,))
  gb = sharding.global_batch(batch, bsh)
  assert len(gb[config.data.input_key].sharding.device_set) == 8
  assert gb[config.data.input_key].addressable_shards[0].data.shape[0] == shape[0] // 8
  state, m = step(state, gb)
  assert int(state["step"]) == 1 and bool(m["finite"]) and np.isfinite(float(m["loss"]))
  assert float(m["loss"]) > 0.5  # cross-entropy over 11 classes from scratch, not a constant
  after = jax.device_get(state["params"])
  changed = [not np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(after),
                                                    jax.tree_util.tree_leaves(before))]
  assert sum(changed) > len(changed) // 2  # the step updated most parameters
  leaf = jax.tree_util.tree_leaves(state["params"])[0]
  assert len(leaf.sharding.device_set) == 8  # replicated over the data axis


def test_ecg_sampler_reaches_the_pipeline_through_the_config_loader():
  """tcn smoke config -> the built-in ECG sampler found by name -> a batch of phase frames."""
  from echojax.run import make_loader
  from echojax.train import resolve_data

  config = load_config("view_video_spatiotemporal:smoke")
  resolve_data(config)  # synthetic phantoms (made once into the cache)
  loader = make_loader(config, "train", train=True)
  batch = next(iter(loader))
  assert batch["video"].shape == (8, 4, 16, 16, 3) and batch["video"].dtype == np.float32
  assert batch["label"].shape == (8,) and batch["label"].max() < 11
  assert batch["mask"].shape == (8, 4)
  image_config = load_config("view_image_effnetb2:smoke")
  resolve_data(image_config)
  ib = next(iter(make_loader(image_config, "val", train=False)))
  assert ib["image"].shape == (8, 32, 32, 3) and "valid" in ib


def test_evaluate_writes_per_sample_aux_columns():
  """The evaluator's aux selection: the fusion gate (B,2) goes to the CSV, features/logits do not."""
  from echojax.evaluate import aux_columns, per_sample_aux

  aux = {"gate": jnp.full((4, 2), 0.5), "features": jnp.zeros((4, 3)), "spatial_logits": jnp.zeros((4, 11)),
         "frame_features": jnp.zeros((4, 2, 3))}
  got = per_sample_aux(aux, 4)
  assert sorted(got) == ["gate"]
  cols = aux_columns({"aux:gate": np.asarray([[0.2, 0.8], [0.6, 0.4]]), "probs": np.zeros((2, 11))})
  assert sorted(cols) == ["gate_0", "gate_1"]
  np.testing.assert_allclose(cols["gate_1"], [0.8, 0.4])
