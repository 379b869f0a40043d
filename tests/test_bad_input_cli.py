"""The commands driven as a user would, with a folder of broken inputs: each ends with its exit status and either
one ``error:`` line or named skips, never a traceback, and the user's raw files and earlier runs are byte-identical
afterwards."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _digest(root: Path) -> dict[str, str]:
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  env.pop("ECHOJAX_DEBUG", None)
  return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _user_error(r: subprocess.CompletedProcess, *words: str) -> str:
  """Exit 2, exactly one ``error:`` line (naming ``words``), no traceback."""
  errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
  assert r.returncode == 2, (r.returncode, r.stdout[-1500:], r.stderr[-1500:])
  assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
  for w in words:
    assert w in errors[0], (w, errors[0])
  return errors[0]


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
  """A user's folder: a small EchoNet-Dynamic raw set with broken rows and files in it, an earlier run's leftovers,
  and a few files that are not what they claim to be."""
  from echojax.data.synthetic import echonet as gen

  root = tmp_path_factory.mktemp("user")
  raw = gen.generate(root / "raw", 6, seed=11, progress=False)
  with open(raw / "FileList.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  header = list(rows[0])
  png = raw / "Videos" / "not_a_video.avi"  # a PNG renamed .avi
  png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
  rows.append({**rows[0], "FileName": "not_a_video"})
  rows.append({**rows[0], "FileName": "../outside"})  # a path out of the raw folder
  rows.append({**rows[0], "FileName": "gone"})  # no such video
  # written by Excel: a UTF-8 byte-order mark in front of the header
  with open(raw / "FileList.csv", "w", newline="", encoding="utf-8-sig") as f:
    w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
  (root / "a_file.txt").write_text("not a folder\n")
  old_run = root / "old_run"  # an earlier run whose checkpoints/ were moved away
  (old_run / "best" / "4").mkdir(parents=True)
  (old_run / "best" / "4" / "keep.bin").write_bytes(b"weights")
  (old_run / "metrics.jsonl").write_text(json.dumps({"step": 4, "split": "val", "mae": 5.0}) + "\n")
  (root / "images").mkdir()
  (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 5)
  return root


def test_bad_inputs_end_in_named_errors_or_skips_and_lose_nothing(broken, tmp_path):
  before = _digest(broken)
  raw, data = broken / "raw", tmp_path / "data"

  # prepare: the broken rows are named skips, the good ones prepared (exit 0)
  r = _cli("echojax.data.prepare", "echonet_dynamic", "--manual-dir", str(raw), "--data-dir", str(data),
           "--config", "28")
  assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
  for name in ("not_a_video", "../outside", "gone"):
    assert name in r.stdout, (name, r.stdout[-3000:])
  report = json.loads(next(data.rglob("echojax_report.json")).read_text())
  assert len(report["skipped"]) == 3
  # ... the same under --strict is one named error
  _user_error(_cli("echojax.data.prepare", "echonet_dynamic", "--manual-dir", str(raw), "--data-dir",
                   str(tmp_path / "strict"), "--config", "28", "--strict"), "FileList.csv (row")
  # a --manual-dir inside the prepared version folder (prepare would have deleted it) and one that is a file
  version = next(p.parent for p in data.rglob("dataset_info.json"))
  inner = version / "my_raw"
  shutil.copytree(raw, inner)
  inner_before = _digest(inner)
  _user_error(_cli("echojax.data.prepare", "echonet_dynamic", "--manual-dir", str(inner), "--data-dir", str(data),
                   "--config", "28"), str(inner))
  assert _digest(inner) == inner_before
  _user_error(_cli("echojax.data.prepare", "echonet_dynamic", "--manual-dir", str(broken / "a_file.txt"),
                   "--data-dir", str(data)), "a_file.txt", "is a file")

  # train: an unknown field, a workdir that is a file, and an earlier run without checkpoints/
  _user_error(_cli("echojax.train", "--config", "echonet_ef:smoke", "--config.data.frmes=3"),
              "--config.data.frames")
  _user_error(_cli("echojax.train", "--config", "echonet_ef:smoke", "--workdir", str(broken / "a_file.txt")),
              "a_file.txt")
  _user_error(_cli("echojax.train", "--config", "echonet_ef:smoke", "--workdir", str(broken / "old_run")),
              "metrics.jsonl")

  # evaluate / export / predict on a folder that is not a run
  for cmd in (["echojax.evaluate", "--workdir", str(broken / "raw")],
              ["echojax.export", "--workdir", str(broken / "raw"), "--name", "X"],
              ["echojax.predict", "--workdir", str(broken / "raw"), "--images", str(broken / "images")]):
    _user_error(_cli(*cmd), "config.json not found")

  # ingest of nothing readable: one error, no FileList
  (tmp_path / "labels.csv").write_text("file,EF\nbroken.png,50\n")
  _user_error(_cli("echojax.data.ingest", "--input", str(broken / "images"), "--labels", str(tmp_path / "labels.csv"),
                   "--out", str(tmp_path / "ingested")), "no video was ingested")
  assert not (tmp_path / "ingested" / "FileList.csv").exists()

  assert _digest(broken) == before  # the user's raw files and the earlier run are byte-identical
