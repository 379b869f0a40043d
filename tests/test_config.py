"""Config system: arg parsing, typed overrides, errors that name the nearest valid key / available configs, and
the CLI's user-error messages (exit code 2, no traceback)."""

import pytest

from echojax import config as config_lib
from echojax import train
from echojax.errors import UserError

HELPER = "tests/trainer_helpers.py:smoke"


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
  assert c.is_locked and c.config_name == "trainer_helpers"
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
