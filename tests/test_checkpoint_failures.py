"""Checkpoints that cannot be written (issue 10, "Nothing may hang or flood"): a read-only checkpoint folder or a
full disk ends the trainer within seconds with one named error (exit 2, one ``error:`` line naming the folder, the
OS error and the last good checkpoint), no traceback and no flood of orbax's per-write errors, wherever orbax
surfaces the failure (at the save itself, in its background commit thread -> the next save or the final wait, or at
close), and the checkpoints written before stay intact.

Tests run as root, so permissions cannot make a folder read-only: the OSError is injected into the trainer
subprocess from a ``sitecustomize.py`` on its PYTHONPATH (nothing test-only in echojax)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from echojax.checkpoint import Checkpointer

REPO = Path(__file__).resolve().parent.parent
HELPER = "tests/helpers/trainer.py:smoke"

# ECHOJAX_TEST_FAULT = "<erofs|enospc>:<where>:<step>"; <where>:
#   save        CheckpointManager.save of that step raises (e.g. creating its folder on a read-only mount)
#   background  orbax's background commit of that step raises (a write failing while the run trains on): orbax
#               logs it with a traceback and re-raises it at the next save, wait_until_finished or close
#   close       CheckpointManager.close of checkpoints/ raises
SITECUSTOMIZE = textwrap.dedent("""
    import errno, os, re
    kind, where, at = os.environ["ECHOJAX_TEST_FAULT"].split(":")
    code, at = {"erofs": errno.EROFS, "enospc": errno.ENOSPC}[kind], int(at)

    def oserror(path):
      return OSError(code, os.strerror(code), str(path))

    def step_of(path):
      m = re.match(r"(\\d+)", os.path.basename(str(path).rstrip("/")))
      return int(m.group(1)) if m else -1

    if where == "save":
      from orbax.checkpoint import checkpoint_manager as cm
      orig_save = cm.CheckpointManager.save
      def save(self, step, *a, **k):
        if step >= at:
          raise oserror(os.path.join(str(self.directory), str(step)))
        return orig_save(self, step, *a, **k)
      cm.CheckpointManager.save = save
    elif where == "background":
      from orbax.checkpoint._src.checkpointers import async_checkpointer as ac
      orig_bg = ac._background_wait_for_commit_futures
      def bg(directory, *a, **k):
        if step_of(directory) >= at:
          raise oserror(directory)
        return orig_bg(directory, *a, **k)
      ac._background_wait_for_commit_futures = bg
    elif where == "close":
      from orbax.checkpoint import checkpoint_manager as cm
      orig_close = cm.CheckpointManager.close
      def close(self):
        orig_close(self)
        if str(self.directory).rstrip("/").endswith("checkpoints"):
          raise oserror(self.directory)
      cm.CheckpointManager.close = close
""")


def _train(tmp_path: Path, fault: str, num_steps: int = 8) -> tuple[subprocess.CompletedProcess, Path]:
  site = tmp_path / "site"
  site.mkdir(exist_ok=True)
  (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
  workdir = tmp_path / "run"
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "ECHOJAX_TEST_FAULT": fault}
  env.pop("ECHOJAX_DEBUG", None)
  cmd = [sys.executable, "-m", "echojax.train", "--config", HELPER, f"--config.train.num_steps={num_steps}",
         "--config.train.checkpoint_every=2", "--config.evals.val.every_steps=0", "--workdir", str(workdir)]
  try:
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
  except subprocess.TimeoutExpired as e:
    pytest.fail(f"the trainer did not exit within 180 s after a checkpoint write failed ({fault}); stderr tail: "
                f"{(e.stderr or b'')[-2000:]!r}")
  return r, workdir


def _finished_steps(workdir: Path) -> list[int]:
  d = workdir / "checkpoints"
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


@pytest.mark.parametrize("fault,failed,good", [
    ("erofs:save:4", 4, 2),  # the save itself fails (a read-only mount)
    ("enospc:background:4", 4, 2),  # the background write fails; surfaces at the next save
    ("enospc:background:8", 8, 6),  # the last save's background write fails; surfaces at the final wait
    ("erofs:close:0", None, 8),  # only closing the manager fails
    ("erofs:save:1", 2, None),  # nothing could ever be written
])
def test_a_checkpoint_that_cannot_be_written_stops_with_one_named_error(tmp_path, fault, failed, good):
  r, workdir = _train(tmp_path, fault)
  err = r.stderr
  lines = err.splitlines()
  errors = [ln for ln in lines if ln.startswith("error:")]
  assert r.returncode == 2, f"exit {r.returncode}; stderr tail:\n{err[-3000:]}"
  assert "Traceback" not in err, err[-3000:]
  assert len(errors) == 1 and len(lines) < 20, err[-3000:]
  msg = errors[0]
  reason = os.strerror(errno.EROFS if fault.startswith("erofs") else errno.ENOSPC)
  assert str(workdir / "checkpoints") in msg and reason in msg, msg
  if failed is not None:
    assert f"checkpoint step {failed} " in msg and "of arrays" in msg, msg  # what was being written, and its size
  if good is None:
    assert "No checkpoint was saved" in msg, msg
    assert _finished_steps(workdir) == []
  else:
    assert f"last good checkpoint is step {good} in {workdir / 'checkpoints'}" in msg, msg
    # the checkpoints written before the failure are intact: the latest one on disk is the good one, and restores
    assert _finished_steps(workdir)[-1] == good
    ck = Checkpointer(workdir, read_only=True)
    try:
      step, meta = ck.restore_meta("latest")
    finally:
      ck.close()
    assert step == good and meta["step"] == good


def _mount_tmpfs(path: Path, size: str) -> bool:
  path.mkdir(parents=True, exist_ok=True)
  try:
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                       timeout=30)
  except (OSError, subprocess.TimeoutExpired):
    return False
  return r.returncode == 0


def _run_cli(workdir: Path, *args: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  env.pop("ECHOJAX_DEBUG", None)
  cmd = [sys.executable, "-m", "echojax.train", "--config", HELPER, "--config.train.checkpoint_every=2",
         "--config.evals.val.every_steps=0", "--workdir", str(workdir), *args]
  try:
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
  except subprocess.TimeoutExpired as e:
    pytest.fail(f"the trainer did not exit within 180 s; stderr tail: {(e.stderr or b'')[-2000:]!r}")


def _one_error(r: subprocess.CompletedProcess) -> str:
  lines = r.stderr.splitlines()
  errors = [ln for ln in lines if ln.startswith("error:")]
  assert r.returncode == 2 and "Traceback" not in r.stderr, f"exit {r.returncode}:\n{r.stderr[-3000:]}"
  assert len(errors) == 1 and len(lines) < 20, r.stderr[-3000:]
  return errors[0]


@pytest.mark.parametrize("fault", ["read_only", "full"])
def test_a_real_read_only_or_full_checkpoint_folder(tmp_path, fault):
  """The same on a real filesystem (a tmpfs mounted at checkpoints/; skipped where mounting is not allowed):
  remounted read-only after a first run, a resume stops at its first save (orbax used to wait out its async
  timeout); a tmpfs too small for the checkpoints fills up (orbax used to log hundreds of lines of tracebacks)."""
  workdir = tmp_path / "run"
  mnt = workdir / "checkpoints"
  if not _mount_tmpfs(mnt, "16m" if fault == "read_only" else "160k"):
    pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
  try:
    if fault == "read_only":
      assert _run_cli(workdir, "--config.train.num_steps=4").returncode == 0
      assert subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True).returncode == 0
      msg = _one_error(_run_cli(workdir, "--config.train.num_steps=8", "--allow-config-change"))
      assert os.strerror(errno.EROFS) in msg and "checkpoint step 6 " in msg, msg
      assert f"last good checkpoint is step 4 in {mnt}" in msg, msg
    else:
      msg = _one_error(_run_cli(workdir, "--config.train.num_steps=40", "--config.train.keep_checkpoints=40"))
      assert os.strerror(errno.ENOSPC) in msg and "of arrays" in msg, msg
    assert str(mnt) in msg, msg
    good = _finished_steps(workdir)
    if good:
      ck = Checkpointer(workdir, read_only=True)
      try:
        assert ck.restore_meta("latest")[0] == good[-1]
      finally:
        ck.close()
  finally:
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
