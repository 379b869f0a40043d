"""EchoNet-Dynamic phantom generator: raw layout, tracing convention, labels from the traces, determinism, ranges."""

from __future__ import annotations

import csv
import math
import re

import numpy as np
import pytest

from echojax.data import echonet
from echojax.data.synthetic import echonet as gen
from echojax.data.synthetic.__main__ import main as synth_main
from echojax.data.video import read_video

N = 6


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory):
  return gen.generate(tmp_path_factory.mktemp("echonet_raw"), N, seed=7, progress=False)


def _rows(path):
  with open(path, newline="") as f:
    return list(csv.reader(f))


def test_filelist_and_tracings_layout(phantoms):
  fl = _rows(phantoms / "FileList.csv")
  assert fl[0] == ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]
  assert len(fl) == N + 1
  names = [r[0] for r in fl[1:]]
  assert all(re.fullmatch(r"0X[0-9A-F]{16}", n) for n in names), names  # real style, no .avi
  assert {r[8] for r in fl[1:]} == {"TRAIN", "VAL", "TEST"}
  vt = _rows(phantoms / "VolumeTracings.csv")
  assert vt[0] == ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]
  assert len(vt) - 1 == N * 2 * 21  # per video: ES and ED frames, 1 long axis + 20 chords each
  by_video = {}
  for r in vt[1:]:
    assert r[0].endswith(".avi")
    by_video.setdefault(r[0][:-4], []).append(int(r[5]))
  assert sorted(by_video) == sorted(names)
  for frames in by_video.values():
    assert len(set(frames)) == 2 and all(frames.count(f) == 21 for f in set(frames))


def test_tracing_geometry_long_axis_then_perpendicular_chords(phantoms):
  tr = echonet.read_tracings(phantoms)
  for frames in tr.values():
    for t in frames.values():
      axis = t[0, 2:] - t[0, :2]
      chords = t[1:, 2:] - t[1:, :2]
      cos = np.abs(chords @ axis) / (np.linalg.norm(chords, axis=1) * np.linalg.norm(axis))
      assert cos.max() < 1e-3  # chords perpendicular to the long axis
      mids = (t[1:, :2] + t[1:, 2:]) / 2  # chord midpoints lie on the long axis, evenly spaced
      proj = (mids - t[0, :2]) @ axis / np.linalg.norm(axis) ** 2
      assert np.allclose(np.diff(np.sort(proj)), 1 / 20, atol=1e-3)


def test_ef_and_volumes_recomputed_from_tracings_for_every_video(phantoms):
  pairs = echonet.ef_from_tracings(phantoms)
  rows = list(csv.DictReader(open(phantoms / "FileList.csv")))
  assert len(pairs) == len(rows)
  for r in rows:
    p = pairs[r["FileName"]]
    assert abs(p.ef - float(r["EF"])) < 1.0, r["FileName"]
    assert abs(p.edv - float(r["EDV"])) < 0.5 and abs(p.esv - float(r["ESV"])) < 0.5
    assert p.edv > p.esv > 0
    assert 40 <= p.edv <= 260  # mL at PHANTOM_CM_PER_PIXEL, like real EDVs


def test_videos_match_filelist(phantoms):
  rows = list(csv.DictReader(open(phantoms / "FileList.csv")))
  pairs = echonet.ef_from_tracings(phantoms)
  for r in rows:
    frames, fps = read_video(phantoms / "Videos" / f"{r['FileName']}.avi")
    assert frames.shape[1:] == (112, 112, 3) and frames.dtype == np.uint8
    assert len(frames) == int(r["NumberOfFrames"]) >= 28
    assert fps == pytest.approx(float(r["FPS"]), abs=0.01)
    # grey content: channels agree up to MJPG chroma noise
    assert np.abs(frames[..., 0].astype(int) - frames[..., 2].astype(int)).mean() < 2
    # sector: corners black, centre bright tissue
    assert frames[:, :5, :5].max() < 20 and frames[:, 40:80, 40:80].mean() > 10
    p = pairs[r["FileName"]]
    assert 0 <= p.ed_frame < len(frames) and 0 <= p.es_frame < len(frames) and p.ed_frame != p.es_frame
    # the traced LV cavity is dark: mean inside the ED long axis much darker than the wall
    x1, y1, x2, y2 = p.ed_trace[0]
    pts = np.stack([np.linspace(x1, x2, 30), np.linspace(y1, y2, 30)], 1)[5:-5].round().astype(int)
    assert frames[p.ed_frame][pts[:, 1], pts[:, 0], 0].mean() < 40


def test_lv_size_follows_a_periodic_volume_curve(phantoms):
  """Dark-pixel area near the traced LV oscillates: >= 2 minima over the video, larger at ED than ES."""
  rows = list(csv.DictReader(open(phantoms / "FileList.csv")))
  pairs = echonet.ef_from_tracings(phantoms)
  r = rows[0]
  frames, _ = read_video(phantoms / "Videos" / f"{r['FileName']}.avi")
  p = pairs[r["FileName"]]
  xs = p.ed_trace[:, [0, 2]].ravel()
  ys = p.ed_trace[:, [1, 3]].ravel()
  box = frames[:, int(ys.min()):int(ys.max()), int(xs.min()):int(xs.max()), 0]
  area = (box < 25).reshape(len(frames), -1).sum(1).astype(float)
  assert area[p.ed_frame] > area[p.es_frame] * 1.1
  period = float(r["FPS"]) * 60 / 130  # at least this many frames per beat (HR <= 130)
  smooth = np.convolve(area, np.ones(3) / 3, mode="same")
  minima = [i for i in range(2, len(area) - 2) if smooth[i] == smooth[max(0, i - int(period / 2)):i + int(period / 2)].min()]
  assert len(minima) >= 2


def test_deterministic_for_a_seed(tmp_path):
  a = gen.generate(tmp_path / "a", 3, seed=11, progress=False)
  b = gen.generate(tmp_path / "b", 3, seed=11, progress=False)
  c = gen.generate(tmp_path / "c", 3, seed=12, progress=False)
  for f in ("FileList.csv", "VolumeTracings.csv"):
    assert (a / f).read_bytes() == (b / f).read_bytes()
  assert (a / "FileList.csv").read_bytes() != (c / "FileList.csv").read_bytes()
  for r in csv.DictReader(open(a / "FileList.csv")):
    va, _ = read_video(a / "Videos" / f"{r['FileName']}.avi")
    vb, _ = read_video(b / "Videos" / f"{r['FileName']}.avi")
    assert np.array_equal(va, vb)


def test_parameter_ranges_and_ef_distribution():
  """Physiology/acquisition draws (cheap, no rendering): HR, FPS, frames, >= 2 beats, EF spread and fraction < 50."""
  ps = [gen.sample_params(np.random.default_rng([0, i])) for i in range(3000)]
  hr = np.array([p["hr"] for p in ps])
  fps = np.array([p["fps"] for p in ps])
  nf = np.array([p["n_frames"] for p in ps])
  ef = np.array([p["ef_target"] for p in ps])
  edv = np.array([p["edv_target"] for p in ps])
  assert 45 <= hr.min() and hr.max() <= 130
  assert 20 <= fps.min() and fps.max() <= 100 and (fps == 50).mean() > 0.4
  assert nf.min() >= 28 and nf.max() >= 300
  assert np.all(nf >= 2 * fps * 60 / hr)  # at least two beats
  assert ef.min() < 15 and ef.max() > 80 and 0.18 <= (ef < 50).mean() <= 0.32
  assert 50 <= edv.min() and edv.max() <= 250


def test_cycle_curve_is_physiological():
  p = np.linspace(0, 1, 1001)[:-1]
  c = gen.cycle(p, 0.33)
  assert c[0] == pytest.approx(1.0) and c.min() == pytest.approx(0.0, abs=1e-3)
  es = int(np.argmin(c))
  assert abs(p[es] - 0.33) < 0.01
  assert np.all(np.diff(c[:es + 1]) <= 1e-9) and np.all(np.diff(c[es:]) >= -1e-9)  # empties, then fills
  assert 0.75 < c[int(0.7 * 1000)] < 0.9  # diastasis plateau before the atrial kick


def test_split_fractions():
  s = gen._splits(np.random.default_rng(0), 1000)
  frac = {k: s.count(k) / 1000 for k in ("TRAIN", "VAL", "TEST")}
  assert frac == pytest.approx({"TRAIN": 0.75, "VAL": 0.13, "TEST": 0.12}, abs=0.005)


def test_cli_dispatcher(tmp_path, capsys):
  synth_main(["echonet", "--out", str(tmp_path / "cli"), "--num-videos", "2", "--seed", "3"])
  assert "wrote echonet phantoms" in capsys.readouterr().out
  assert len(list((tmp_path / "cli" / "Videos").glob("*.avi"))) == 2
  ref = gen.generate(tmp_path / "ref", 2, seed=3, progress=False)
  assert (ref / "FileList.csv").read_bytes() == (tmp_path / "cli" / "FileList.csv").read_bytes()


def test_disc_volume_matches_cylinder():
  """A rectangle traced with 20 equal chords is a cylinder: V = pi r^2 L."""
  L, d = 40.0, 10.0
  rows = [[0, 0, 0, L]] + [[-d / 2, (i + 0.5) * L / 20, d / 2, (i + 0.5) * L / 20] for i in range(20)]
  assert echonet.disc_volume(np.array(rows), cm_per_pixel=1.0) == pytest.approx(math.pi * (d / 2) ** 2 * L)
