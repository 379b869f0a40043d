"""Config system: arg parsing, typed overrides, errors that name the nearest valid key / available configs, and
the CLI's user-error messages (exit code 2, no traceback)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echojax import config as config_lib
from echojax import train
from echojax.run import build_model
from echojax.errors import UserError

HELPER = "tests/helpers/trainer.py:smoke"


def test_parse_arg_flags_and_typed_values():
  a = config_lib.parse_arg("model=resnet152,size=56,weighted", model="resnet18", size=112, weighted=False,
                           smoke=False)
  assert (a.model, a.size, a.weighted, a.smoke) == ("resnet152", 56, True, False)
  assert config_lib.parse_arg(None, smoke=False).smoke is False
  with pytest.raises(UserError, match="Did you mean 'size'"):
    config_lib.parse_arg("sise=28", size=112)
  with pytest.raises(UserError, match="expected an int"):
    config_lib.parse_arg("size=big", size=112)


def test_overrides_are_typed_by_the_existing_field():
  c = config_lib.load_config(HELPER, ["optim.lr=3e-4", "train.num_steps=7", "optim.name=adam",
                                      "init_from=/tmp/run", "mesh=[('data', -1), ('fsdp', 2)]"])
  assert c.optim.lr == pytest.approx(3e-4) and isinstance(c.optim.lr, float)
  assert c.train.num_steps == 7 and isinstance(c.train.num_steps, int)
  assert c.optim.name == "adam" and c.init_from == "/tmp/run"
  assert [tuple(m) for m in c.mesh] == [("data", -1), ("fsdp", 2)]
  assert c.is_locked and c.config_name == "trainer"
  with pytest.raises(UserError, match="expected a float"):
    config_lib.load_config(HELPER, ["optim.lr=fast"])


def test_bad_override_key_names_nearest_key():
  with pytest.raises(UserError, match=r"--config\.optim\.lr"):
    config_lib.load_config(HELPER, ["optim.lrr=0.1"])


def test_unknown_config_lists_available():
  with pytest.raises(UserError) as e:
    config_lib.load_config("echonet_eff:smoke")
  assert "Available:" in str(e.value)
  for name in config_lib.list_configs():
    assert name in str(e.value)


def test_default_workdir_is_deterministic():
  assert str(config_lib.default_workdir("ef_classification:model=resnet18,size=56")) == \
      "workdirs/ef_classification_model_resnet18_size_56"
  assert str(config_lib.default_workdir("echonet_ef")) == "workdirs/echonet_ef"


def _cli_error(capsys, argv) -> str:
  with pytest.raises(SystemExit) as e:
    train.main(argv)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert "Traceback" not in err
  return err


def test_cli_unknown_config(capsys):
  err = _cli_error(capsys, ["--config", "nope:smoke"])
  assert "unknown config 'nope'" in err and "Available:" in err


def test_cli_bad_override_key(capsys):
  err = _cli_error(capsys, ["--config", HELPER, "--config.train.num_step=3"])
  assert "--config.train.num_steps" in err


def test_cli_missing_data_names_prepare_command(capsys, tmp_path):
  err = _cli_error(capsys, ["--config", HELPER, "--workdir", str(tmp_path / "w"),
                            "--config.data.name=echonet_dynamic", f"--config.data.data_dir={tmp_path / 'nodata'}"])
  assert "python -m echojax.data.prepare echonet_dynamic" in err and "data.data_dir" in err


def test_cli_batch_not_divisible_by_devices(capsys, tmp_path):
  err = _cli_error(capsys, ["--config", HELPER, "--workdir", str(tmp_path / "w"), "--config.data.batch_size=6"])
  assert "data.batch_size=6 is not divisible by the 8 devices" in err
  assert not (tmp_path / "w" / "checkpoints").exists()


def test_echonet_ef_is_the_reference_recipe():
  c = config_lib.load_config("echonet_ef")
  assert (c.model.name, c.data.frames, c.data.period, c.task.kind) == ("r2plus1d_18", 32, 2, "ef_regression")
  assert (c.optim.name, c.optim.lr, c.optim.momentum, c.optim.weight_decay) == ("sgd", 1e-4, 0.9, 1e-4)
  assert (c.optim.schedule, c.optim.decay_every_epochs, c.optim.decay_factor) == ("step", 15.0, 0.1)
  assert c.task.output_bias is None and not c.data.data_dir  # bias from train mean; synthetic default data
  from echojax.optim import make_schedule
  sched = make_schedule(c.optim, steps_per_epoch=10, total_steps=450)
  np.testing.assert_allclose([sched(149), sched(150), sched(299), sched(300)], [1e-4, 1e-5, 1e-5, 1e-6], rtol=1e-5)


@pytest.mark.parametrize("model,depth", [("resnet18", 18), ("resnet152", 152)])
@pytest.mark.parametrize("size", [28, 56, 112])
@pytest.mark.parametrize("weighted", [False, True])
def test_ef_classification_table_cells(model, depth, size, weighted):
  arg = f"model={model},size={size}" + (",weighted" if weighted else "")
  c = config_lib.load_config(f"ef_classification:{arg}")
  assert c.model.name == "frame_resnet" and c.model.kwargs.depth == depth
  assert c.data.builder_config == str(size) and c.task.kind == "ef_classification"
  assert c.task.class_weights == ("balanced" if weighted else None)
  assert config_lib.default_workdir(f"ef_classification:{arg}").name.startswith(f"ef_classification_model_{model}")


def test_ef_classification_rejects_cells_outside_the_table():
  with pytest.raises(UserError, match="use one of resnet18, resnet152"):
    config_lib.load_config("ef_classification:model=resnet50")
  with pytest.raises(UserError, match="size=64"):
    config_lib.load_config("ef_classification:size=64")


def _param_count(spec, shape):
  from echojax.tasks import get_task
  c = config_lib.load_config(spec)
  model = build_model(c, get_task(c))
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes["params"])), shapes["params"]


def test_experiment_models_by_eval_shape():
  n, params = _param_count("echonet_ef", (1, 4, 112, 112, 3))
  assert params["head"]["kernel"].shape == (512, 1)  # one EF output
  assert 31.0e6 < n < 31.6e6, n  # torchvision r2plus1d_18 without its 400-way head, plus a 1-way head
  n, params = _param_count("ef_classification:model=resnet152", (1, 2, 112, 112, 3))
  assert params["head"]["kernel"].shape == (2048, 2)
  assert 58.0e6 < n < 58.5e6, n  # torchvision resnet152 (60.2M) minus its 1000-way head (2.05M) + 2-way head
  n, _ = _param_count("ef_classification:smoke", (1, 2, 28, 28, 3))
  assert n < 200_000, n  # smoke: width-8 backbone
