"""Two real JAX processes on 127.0.0.1 (4 CPU devices each, gloo collectives) train echonet_ef:smoke together, as
two hosts would: one run, one log, checkpoints both processes wrote; the result restores on a single process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WORKER = REPO / "tests" / "helpers" / "workers" / "checkpoint_worker.py"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_training_then_single_process_evaluation(tmp_path):
  from echojax.config import load_config
  from echojax.train import resolve_data

  resolve_data(load_config("echonet_ef:smoke"))  # the smoke phantom set, made once before the processes start
  run = tmp_path / "run"
  port = _free_port()
  procs = []
  for p in range(2):
    env = dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS="--xla_force_host_platform_device_count=4",
               ECHOJAX_COORDINATOR=f"127.0.0.1:{port}", ECHOJAX_NUM_PROCESSES="2", ECHOJAX_PROCESS_ID=str(p))
    procs.append(subprocess.Popen([sys.executable, "-m", "echojax.train", "--config", "echonet_ef:smoke",
                                   "--workdir", str(run)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True))
  outs = []
  try:
    for proc in procs:
      out, err = proc.communicate(timeout=600)  # a hang detector: the run takes about a minute
      assert proc.returncode == 0, err[-3000:]
      # each host prints its headline of the last metrics ("train step 4: loss ...", "val step 4: ...")
      outs.append([ln for ln in out.strip().splitlines() if ln.startswith(("train step", "val step"))])
  finally:
    for proc in procs:  # never leave a hung process behind
      proc.kill()
  assert outs[0] == outs[1]  # replicated metrics: both hosts see the same global numbers
  assert outs[0][0].startswith("train step 4: loss "), outs
  steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
           if json.loads(line)["split"] == "train"]
  assert steps == sorted(set(steps)) and steps[-1] == 4  # one log, written by process 0 only
  assert {p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit()} >= {"4"}
  env = dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS="--xla_force_host_platform_device_count=1")
  r = subprocess.run([sys.executable, "-m", "echojax.evaluate", "--workdir", str(run), "--split", "val",
                      "--clips", "one", "--bootstrap", "0", "--checkpoint", "latest"], cwd=REPO, env=env,
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "restored latest checkpoint step 4" in r.stderr
  assert r.stdout.strip().splitlines()[-1].startswith("val (")


def test_latest_and_best_saves_of_one_step_do_not_deadlock(tmp_path):
  """Two processes save checkpoints/<s> and best/<s> back to back. orbax names a save's barriers after the step's
  temporary folder, the same in both; without per-manager barrier prefixes this hung at the first step every time."""
  port = _free_port()
  env = dict(os.environ, PYTHONPATH=str(REPO))
  procs = [subprocess.Popen([sys.executable, str(WORKER), str(p), str(port),
                             str(tmp_path / "run"), "4"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for p in range(2)]
  try:
    for proc in procs:
      out, err = proc.communicate(timeout=300)  # a deadlock, not a speed limit: this takes seconds
      assert proc.returncode == 0 and out.strip().splitlines()[-1] == "done", err[-3000:]
  finally:
    for proc in procs:
      proc.kill()
  names = lambda d: sorted(p.name for p in (tmp_path / "run" / d).iterdir())
  assert names("checkpoints") == ["3", "4"] and names("best") == ["4"]  # committed, no *.orbax-checkpoint-tmp left


@pytest.mark.slow
def test_sigterm_to_one_host_stops_both_at_the_same_saved_step_and_the_rerun_resumes(tmp_path):
  """Preemption on a slice reaches one host first. JAX's preemption sync point makes both processes stop and save
  at one agreed step (a per-process flag let one host wait in the save's barrier forever), both exit 0, and
  rerunning the same command on both resumes from that step to the end."""
  import signal
  import time

  run = tmp_path / "run"
  args = ["--config", "tests/helpers/trainer.py:smoke", "--config.train.num_steps=150",
          "--config.train.checkpoint_every=1000", "--config.train.log_every=1000", "--config.evals.val.every_steps=0",
          "--config.data.sleep=0.05", "--workdir", str(run)]

  def start(port):
    procs = []
    for p in range(2):
      env = dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS="--xla_force_host_platform_device_count=4",
                 ECHOJAX_COORDINATOR=f"127.0.0.1:{port}", ECHOJAX_NUM_PROCESSES="2", ECHOJAX_PROCESS_ID=str(p))
      procs.append(subprocess.Popen([sys.executable, "-m", "echojax.train", *args], cwd=REPO, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs

  def finish(procs):
    errs = []
    try:
      for proc in procs:
        _, err = proc.communicate(timeout=600)  # a hang detector
        assert proc.returncode == 0, err[-3000:]
        errs.append(err)
    finally:
      for proc in procs:
        proc.kill()
    return errs

  procs = start(_free_port())
  deadline = time.time() + 300
  while not (run / "config.json").exists():  # written once the state is built: training is under way
    assert time.time() < deadline and all(p.poll() is None for p in procs), "training did not start"
    time.sleep(0.5)
  time.sleep(3)
  procs[1].send_signal(signal.SIGTERM)  # only the second host hears of the preemption
  errs = finish(procs)
  stops = [[ln for ln in e.splitlines() if "preempted (SIGTERM) at step" in ln] for e in errs]
  assert all(stops), errs[0][-2000:]
  steps = {int(s[-1].split("at step ")[1].split(",")[0]) for s in stops}
  assert len(steps) == 1, stops  # both hosts stopped at the same step
  stop = steps.pop()
  assert 0 < stop < 150
  saved = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
  assert saved[-1] == stop
  finish(start(_free_port()))  # the rerun resumes on both hosts and ends the run
  saved = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
  assert saved[-1] == 150
