"""SkyPilot launcher: one managed-job task per sweep run, checked by SkyPilot's own offline validation."""

import shlex
import sys

import pytest
import yaml

from echojax.errors import UserError
from launch import sky as launch_sky
from launch import sweep as launch_sweep

BUCKET = "gs://echojax-test-bucket/runs"


@pytest.fixture
def sky_home(tmp_path, monkeypatch):
  """SkyPilot writes ~/.sky (user hash, locks, catalog cache): keep it in tmp_path."""
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  (tmp_path / "home").mkdir()
  return tmp_path


@pytest.fixture(scope="module")
def demo_sweep():
  return launch_sweep.load_sweep("spatiotemporal_weighting", "demo")


CASES = {
    "tpu": dict(accelerators="tpu-v5e-8", infra="gcp"),
    "slurm_gpu": dict(accelerators="H100:8", infra="slurm/my-cluster", use_spot=False, num_nodes=2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tasks_pass_skypilot_validation_and_run_train_then_eval(case, demo_sweep, sky_home):
  kw = CASES[case]
  out = sky_home / case
  paths = launch_sky.write_tasks(demo_sweep, out, bucket=BUCKET, sweep_name="stw_demo", **kw)
  assert [p.name for p in paths] == [f"{r['name']}.yaml" for r in demo_sweep["runs"]]
  for path, run in zip(paths, demo_sweep["runs"]):
    launch_sky.validate_task(path)  # SkyPilot's schema, Resources construction, name, recovery strategy, features
    spec = yaml.safe_load(path.read_text())
    wd = f"/echojax-runs/stw_demo/{run['name']}"
    assert spec["workdir"] == "."
    assert spec["file_mounts"] == {"/echojax-runs": {"source": BUCKET, "mode": "MOUNT"}}
    res = spec["resources"]
    assert res["accelerators"] == kw["accelerators"] and res["infra"] == kw["infra"]
    assert res["use_spot"] is kw.get("use_spot", True)
    assert res["job_recovery"]["strategy"] and res["job_recovery"]["max_restarts_on_errors"] >= 1
    assert spec["num_nodes"] == kw.get("num_nodes", 1)
    extra = "tpu" if case == "tpu" else "cuda"
    assert f"-e '.[{extra}]'" in spec["setup"]
    train = shlex.join(launch_sweep.train_command(demo_sweep, run, wd, "python"))
    ev = shlex.join(launch_sweep.eval_command(demo_sweep, wd, "python"))
    script = spec["run"]
    assert train in script and ev in script and script.index(train) < script.index(ev)
    assert f"--workdir {wd}" in script and f"--out {wd}/eval_test" in script
    assert 'if [ "${SKYPILOT_NODE_RANK:-0}" = "0" ]' in script  # one process evaluates
    if kw.get("num_nodes", 1) > 1:
      assert 'ECHOJAX_PROCESS_ID="$SKYPILOT_NODE_RANK"' in script and "ECHOJAX_COORDINATOR=" in script
      assert spec["envs"]["ECHOJAX_COORDINATOR_PORT"]
    else:
      assert "ECHOJAX_COORDINATOR" not in script
  cmds = launch_sky.launch_commands(paths)
  assert shlex.split(cmds[0]) == ["sky", "jobs", "launch", "-y", "-n", f"stw_demo-{demo_sweep['runs'][0]['name']}",
                                  str(paths[0])]


def test_broken_specs_are_rejected_naming_the_file(demo_sweep, sky_home):
  good = launch_sky.task_spec(demo_sweep, demo_sweep["runs"][0], bucket=BUCKET, accelerators="tpu-v5e-8",
                              infra="gcp", sweep_name="stw_demo")
  broken = {
      "unknown_resources_field": {**good, "resources": {**good["resources"], "acclerators_typo": "H100:8"}},
      "unknown_top_level_field": {**good, "nmu_nodes": 2},
      "bad_recovery_strategy": {**good, "resources": {**good["resources"], "job_recovery": {"strategy": "NOPE"}}},
      "bad_mount_mode": {**good, "file_mounts": {"/echojax-runs": {"source": BUCKET, "mode": "MOUNTED"}}},
      "unknown_cloud": {**good, "resources": {**good["resources"], "infra": "gpc"}},
      "spot_on_slurm": {**good, "resources": {**good["resources"], "accelerators": "H100:8", "infra": "slurm/c"}},
  }
  for name, spec in broken.items():
    path = sky_home / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(UserError, match=f"{name}.yaml: SkyPilot rejects"):
      launch_sky.validate_task(path)


def test_task_spec_refusals_and_shared_filesystem(demo_sweep):
  run = demo_sweep["runs"][0]
  with pytest.raises(UserError, match="no spot"):
    launch_sky.task_spec(demo_sweep, run, bucket=BUCKET, accelerators="H100:8", infra="slurm/c", sweep_name="s")
  with pytest.raises(UserError, match="bucket URL"):
    launch_sky.task_spec(demo_sweep, run, bucket="my-bucket", accelerators="H100:8", sweep_name="s")
  spec = launch_sky.task_spec(demo_sweep, run, bucket="/shared/runs", accelerators="H100:8", infra="slurm/c",
                              use_spot=False, sweep_name="s", setup="source /shared/env.sh")
  assert "file_mounts" not in spec and f"--workdir /shared/runs/s/{run['name']}" in spec["run"]
  assert spec["setup"] == "source /shared/env.sh" and "infra" in spec["resources"]
  assert launch_sky.sky_name("my sweep!", "fixed_0.25") == "my-sweep-fixed_0.25"


def test_missing_skypilot_is_a_user_error(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "sky", None)  # import sky -> ImportError
  with pytest.raises(UserError, match=r"pip install -e '\.\[cloud\]'"):
    launch_sky.validate_task(tmp_path / "x.yaml")
