"""Raw-data checks for echonet_dynamic preparation (issue 10): the raw folder is never deleted, skip summaries
are grouped, encodings, bad videos and bad rows are named skips or notes."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from echojax.data import echonet
from echojax.data.prepare import REPORT_FILE, prepare
from echojax.data.report import SkipReport
from echojax.data.synthetic import echonet as gen
from echojax.errors import UserError


def _read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _write_csv(path, rows, header):
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)


def _tree_digest(root: Path) -> dict:
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_raw(tmp_path_factory):
  return gen.generate(tmp_path_factory.mktemp("echonet_small"), 4, seed=3, progress=False)


# -- item 1: a --manual-dir where the prepared version folder goes is refused, and a file is called a file --------

@pytest.mark.parametrize("where", ["version", "inside"])
def test_manual_dir_in_version_folder_is_refused_untouched(small_raw, tmp_path, where):
  data = tmp_path / "DATA"
  version = data / "echonet_dynamic" / "28" / "1.0.0"
  manual = version if where == "version" else version / "raw"
  shutil.copytree(small_raw, manual)
  before = _tree_digest(manual)
  with pytest.raises(UserError) as e:
    prepare("echonet_dynamic", manual, data, "28", verbose=False)
  msg = str(e.value)
  assert str(manual) in msg and str(version) in msg
  assert _tree_digest(manual) == before
  with pytest.raises(UserError):  # --overwrite too
    prepare("echonet_dynamic", manual, data, "28", overwrite=True, verbose=False)
  assert _tree_digest(manual) == before


def test_manual_dir_that_is_a_file(tmp_path):
  f = tmp_path / "FileList.csv"
  f.write_text("FileName,EF,Split\n")
  with pytest.raises(UserError) as e:
    prepare("echonet_dynamic", f, tmp_path / "out", "28", verbose=False)
  assert "is a file" in str(e.value) and "does not exist" not in str(e.value)
