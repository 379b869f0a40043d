"""python -m echojax.data.ingest on a real JPEG-baseline YBR DICOM cine (pydicom's test data), an MP4 and a GIF
written here, plus corrupt files and a label row without a file, which must be reported."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from echojax.data import ingest
from echojax.data.echonet import read_filelist
from echojax.data.report import SkipReport
from echojax.data.video import read_video
from echojax.errors import UserError

pydicom = pytest.importorskip("pydicom")


def dicom_cine_path():
  from pydicom.data import get_testdata_file

  path = get_testdata_file("examples_ybr_color.dcm")
  if path is None:
    pytest.skip("pydicom test file examples_ybr_color.dcm not available in this pydicom install")
  return path


def write_mp4(path, frames=12, fps=25):
  import av

  with av.open(str(path), "w") as c:
    s = c.add_stream("mpeg4", rate=fps)
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
    for t in range(frames):
      img = np.zeros((48, 64, 3), np.uint8)
      img[:, : 8 + 4 * t] = 200
      for p in s.encode(__import__("av").VideoFrame.from_ndarray(img, format="rgb24")):
        c.mux(p)
    for p in s.encode():
      c.mux(p)


def write_gif(path, frames=6, duration_ms=40):
  from PIL import Image

  ims = [Image.fromarray(np.full((40, 40, 3), 30 * t, np.uint8)) for t in range(frames)]
  ims[0].save(path, save_all=True, append_images=ims[1:], duration=duration_ms, loop=0)


def test_dicom_cine_decodes_to_rgb_with_fps_from_frame_time():
  cine = ingest.read_cine(dicom_cine_path())
  assert cine.frames.shape == (30, 240, 320, 3) and cine.frames.dtype == np.uint8
  assert cine.fps == pytest.approx(1000 / 33.333, rel=1e-4) and cine.fps_source == "FrameTime"
  # YBR -> RGB happened: the grey background has equal R, G, B (raw YCbCr would be (Y, 128, 128))
  px = cine.frames[0, 120, 160].astype(int)
  assert abs(px[0] - px[1]) <= 2 and abs(px[1] - px[2]) <= 2
  ds = pydicom.dcmread(dicom_cine_path())
  assert str(ds.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.50"  # JPEG baseline
  # colour content survives: some pixels are clearly not grey
  spread = cine.frames.astype(int).max(-1) - cine.frames.astype(int).min(-1)
  assert spread.max() > 50


def test_dicom_fps_tag_order():
  ds = pydicom.Dataset()
  ds.FrameTime = "20"
  ds.RecommendedDisplayFrameRate = "30"
  assert ingest.dicom_fps(ds) == (50.0, "FrameTime")
  ds.CineRate = "60"
  assert ingest.dicom_fps(ds) == (60.0, "CineRate")
  ds2 = pydicom.Dataset()
  ds2.FrameTimeVector = ["0", "40", "40"]
  assert ingest.dicom_fps(ds2) == (25.0, "FrameTimeVector")
  assert ingest.dicom_fps(pydicom.Dataset()) == (None, "none")


def make_input(tmp_path):
  src = tmp_path / "input"
  (src / "dicom").mkdir(parents=True)
  shutil.copy(dicom_cine_path(), src / "dicom" / "cine1.dcm")
  write_mp4(src / "clip2.mp4")
  write_gif(src / "loop3.gif")
  (src / "broken4.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x13\x37" * 50)  # DICOM preamble, garbage after
  (src / "broken5.mp4").write_bytes(b"this is not an mp4 file at all" * 10)
  real = open(dicom_cine_path(), "rb").read()
  (src / "trunc7.dcm").write_bytes(real[: len(real) // 2])  # a real cine cut in half
  (src / "unlisted.gif").write_bytes((src / "loop3.gif").read_bytes())
  labels = tmp_path / "labels.csv"
  with open(labels, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["File", "EF", "ESV", "patient"])
    w.writerow(["dicom/cine1.dcm", "55.5", "40", "p1"])
    w.writerow(["clip2", "35", "", "p2"])
    w.writerow(["loop3.gif", "62", "", "p3"])
    w.writerow(["broken4.dcm", "50", "", "p4"])
    w.writerow(["broken5.mp4", "45", "", "p5"])
    w.writerow(["missing6.dcm", "40", "", "p6"])
    w.writerow(["clip2.mp4", "abc", "", "p2"])
    w.writerow(["trunc7", "58", "", "p7"])
  return src, labels


def test_ingest_end_to_end_reports_problems(tmp_path):
  src, labels = make_input(tmp_path)
  out = tmp_path / "raw"
  proc = subprocess.run([sys.executable, "-m", "echojax.data.ingest", "--input", str(src), "--labels", str(labels),
                         "--out", str(out), "--size", "32"], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  text = proc.stdout
  assert "broken4.dcm" in text and "broken5.mp4" in text and "missing6.dcm" in text
  report = json.loads((out / "ingest_report.json").read_text())
  skipped = {(s["file"], s["row"]): s["reason"] for s in report["skipped"]}
  assert "could not read" in skipped[("broken4.dcm", 4)]
  assert "could not read" in skipped[("broken5.mp4", 5)]
  assert "without a file" in skipped[("missing6.dcm", 6)]
  assert "not a number" in skipped[("clip2.mp4", 7)]
  assert "truncated" in skipped[("trunc7.dcm", 8)]
  assert any(n["file"] == "unlisted.gif" for n in report["notes"])
  assert sum(report["counts"].values()) == 3

  # the result is a valid EchoNet-Dynamic raw folder for the builder's reader
  rows = read_filelist(out, SkipReport(strict=True))
  by_name = {r.file_name: r for r in rows}
  assert set(by_name) == {"cine1", "clip2", "loop3"}
  assert by_name["cine1"].fps == pytest.approx(30.0, abs=1e-2) and by_name["cine1"].num_frames == 30
  assert by_name["cine1"].ef == pytest.approx(55.5) and by_name["cine1"].esv == pytest.approx(40)
  assert by_name["clip2"].fps == pytest.approx(25.0) and by_name["clip2"].num_frames == 12
  assert by_name["loop3"].fps == pytest.approx(25.0) and by_name["loop3"].num_frames == 6
  assert all(r.split in ("TRAIN", "VAL", "TEST") for r in rows)
  frames, fps = read_video(out / "Videos" / "cine1.avi")
  assert frames.shape == (30, 32, 32, 3) and fps == pytest.approx(30.0, abs=0.1)
  frames, _ = read_video(out / "Videos" / "clip2.avi")
  assert frames.shape == (12, 32, 32, 3)
  assert frames[-1].mean() > frames[0].mean() + 20  # the bright bar grows: frame order kept

  # deterministic: a second run writes the same FileList
  out2 = tmp_path / "raw2"
  ingest.ingest(src, labels, out2, size=32, progress=False)
  assert (out / "FileList.csv").read_text() == (out2 / "FileList.csv").read_text()


def test_ingest_strict_and_label_errors(tmp_path):
  src, labels = make_input(tmp_path)
  with pytest.raises(UserError, match=r"clip2.mp4 \(row 7\).*not a number"):  # labels are checked first
    ingest.ingest(src, labels, tmp_path / "raw", size=32, strict=True, progress=False)
  labels.write_text("file,EF\ncine1.dcm,50\nbroken4.dcm,50\n")
  with pytest.raises(UserError, match=r"broken4.dcm \(row 2\): could not read"):
    ingest.ingest(src, labels, tmp_path / "raw", size=32, strict=True, progress=False)
  bad = tmp_path / "bad.csv"
  bad.write_text("name,score\nx,1\n")
  with pytest.raises(UserError, match="'file' column"):
    ingest.ingest(src, bad, tmp_path / "raw", progress=False)


def test_splits_from_csv_are_kept_and_assignment_is_patient_disjoint():
  rows = [ingest.LabelRow(i + 1, f"f{i}", float(30 + i % 40), np.nan, np.nan, None, f"p{i // 3}") for i in range(60)]
  rows[0].split = "TEST"
  a = ingest.assign_splits(rows, seed=0)
  assert a == ingest.assign_splits(rows, seed=0) and 1 not in a
  by_patient = {}
  for r in rows[1:]:
    by_patient.setdefault(r.group, set()).add(a[r.row])
  assert all(len(s) == 1 for s in by_patient.values())
  counts = {s: list(a.values()).count(s) for s in ("TRAIN", "VAL", "TEST")}
  assert counts["TRAIN"] > counts["VAL"] > 0 and counts["TEST"] > 0


def test_stills_few_files_and_empty_ingest_are_said(tmp_path, capsys):
  """A single-frame DICOM still is a named skip (or kept with --stills keep, noted); a split that got no video is a
  note; an ingest of nothing writes no FileList, exits 2 with one error line and never says 'next: prepare'."""
  from pydicom.data import get_testdata_file

  src = tmp_path / "in"
  src.mkdir()
  shutil.copy(get_testdata_file("CT_small.dcm"), src / "still.dcm")  # one frame
  shutil.copy(dicom_cine_path(), src / "cine.dcm")
  labels = tmp_path / "labels.csv"
  labels.write_text("file,EF\nstill.dcm,50\ncine.dcm,60\n")
  rep = ingest.ingest(src, labels, tmp_path / "drop", size=32, progress=False)
  assert [s["reason"] for s in rep.to_json()["skipped"]][0].startswith("a single-frame still, not a cine")
  names = [r.file_name for r in read_filelist(tmp_path / "drop", SkipReport(strict=True))]
  assert names == ["cine"]
  assert any("got no video" in n["reason"] for n in rep.to_json()["notes"])  # 1 video cannot fill 3 splits
  kept = ingest.ingest(src, labels, tmp_path / "keep", size=32, stills="keep", progress=False)
  assert sum(kept.counts.values()) == 2 and any("1-frame video" in n["reason"] for n in kept.to_json()["notes"])

  labels.write_text("file,EF\nstill.dcm,50\n")
  with pytest.raises(SystemExit) as e:
    ingest.main(["--input", str(src), "--labels", str(labels), "--out", str(tmp_path / "none"), "--size", "32"])
  assert e.value.code == 2
  out = capsys.readouterr()
  assert "error: no video was ingested" in out.err and "next:" not in out.out and "Traceback" not in out.err
  assert not (tmp_path / "none" / "FileList.csv").exists()


def test_ingested_frames_are_lossless_so_predict_on_the_original_sees_the_same(tmp_path):
  """ingest stores what predict makes of the original DICOM (to_square of read_cine, with the default sector crop) bit
  for bit (FFV1), so a cine scores the same through predict on the DICOM and through evaluate after ingest + prepare
  (MJPG had differed)."""
  src = tmp_path / "in"
  src.mkdir()
  shutil.copy(dicom_cine_path(), src / "cine.dcm")
  (tmp_path / "labels.csv").write_text("file,EF\ncine.dcm,60\n")
  ingest.ingest(src, tmp_path / "labels.csv", tmp_path / "raw", size=32, progress=False)
  stored, _ = read_video(tmp_path / "raw" / "Videos" / "cine.avi")
  want = ingest.to_square(ingest.read_cine(src / "cine.dcm").frames, 32, "sector")
  np.testing.assert_array_equal(stored, want)
  from echojax.predict import read_cine_as_stored

  np.testing.assert_array_equal(read_cine_as_stored(src / "cine.dcm", 32)[0], want)
  assert (tmp_path / "raw" / "previews" / "cine.png").is_file()
