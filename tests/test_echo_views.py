"""Echo view phantoms + builder: layout, determinism, splits/shapes, ECG-derived ED frames vs ground truth,
named skips for broken inputs, strict mode, and the ECG-free intensity fallback on a phantom cine."""

import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from echojax.data import ecg as E
from echojax.data.synthetic import echo_views as G
from echojax.data.synthetic.ecg import synthesize_ecg
from echojax.errors import UserError
from tfds_builders.echo_views import CLASSES, EchoViews


def _build(manual_dir, data_dir, config, **kw):
  b = EchoViews(data_dir=str(data_dir), config=config, **kw)
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return b


@pytest.fixture(scope="module")
def good(tmp_path_factory):
  root = tmp_path_factory.mktemp("echo_views_raw")
  G.generate(root, num_per_class=7, seed=3, min_frames=24, max_frames=40)
  return root


def test_generator_layout_and_determinism(tmp_path, good):
  assert tuple(G.VIEWS) == CLASSES and len(CLASSES) == 11
  for kind in ("images", "videos"):
    assert sorted(p.name for p in (good / kind).iterdir()) == sorted(CLASSES)
  vids = sorted((good / "videos" / "A4C").iterdir())
  names = {p.name for p in vids}
  assert {"A4C_0000.avi", "A4C_0000.csv", "A4C_0001.mp4", "A4C_0002.hea", "A4C_0002.dat"} <= names
  assert (good / "videos" / "A4C" / "A4C_0000.csv").read_text().startswith("time_s,ecg_mv\n")
  assert any(p.suffix == ".jpg" for p in (good / "images" / "PLAX").iterdir())
  truth = G.read_ground_truth(good)
  assert len(truth) == 77
  for row in truth.values():
    assert 24 <= row["num_frames"] <= 40 and 60 <= row["hr_bpm"] <= 130
  # same seed -> same bytes; items do not depend on how many per class were asked for
  G.generate(tmp_path / "a", num_per_class=2, seed=3, min_frames=24, max_frames=40, videos=False)
  for view in ("A2C", "CW_DOPPLER"):
    assert (tmp_path / "a" / "images" / view / f"{view}_0001.png").read_bytes() == \
        (good / "images" / view / f"{view}_0001.png").read_bytes()
  with pytest.raises(UserError, match="num-per-class"):
    G.generate(tmp_path / "b", num_per_class=0)


def test_views_differ_and_move_with_the_heart():
  rng = np.random.default_rng(0)
  firsts = {}
  for view in CLASSES:
    v = G.render_video(view, 12, 25.0, 100.0, 0.1, np.random.default_rng(1))
    assert v.shape == (12, 112, 112, 3) and v.dtype == np.uint8
    assert np.abs(v[0].astype(int) - v[6].astype(int)).mean() > 1.0  # frames change over the cycle
    firsts[view] = v[0, ..., 0].astype(float)
  for a in CLASSES:  # every pair of views differs clearly in layout
    for b in CLASSES:
      if a < b:
        assert np.abs(firsts[a] - firsts[b]).mean() > 5.0, (a, b)
  with pytest.raises(UserError, match="unknown view"):
    G.render_video("A6C", 4, 25.0, 80.0, 0.1, rng)


def test_builder_good_folder(tmp_path, good):
  data_dir = tmp_path / "tfds"
  b = _build(good, data_dir, "images")
  assert not b.report.skipped
  assert dict(b.report.counts) == {"train": 55, "val": 11, "test": 11}
  src = tfds.data_source("echo_views/images", data_dir=str(data_dir))
  for split in ("train", "val", "test"):
    labels = {int(src[split][i]["label"]) for i in range(len(src[split]))}
    assert labels == set(range(11)), split  # stratified: every class in every split
  rec = src["train"][0]
  assert rec["image"].shape == (112, 112, 3) and rec["image"].dtype == np.uint8
  assert rec["file_name"].decode().startswith("images/")

  b = _build(good, data_dir, "videos")
  assert not b.report.skipped
  assert dict(b.report.counts) == {"train": 55, "val": 11, "test": 11}
  truth = G.read_ground_truth(good)
  src = tfds.data_source("echo_views/videos", data_dir=str(data_dir))
  exact, total, files = 0, 0, {}
  for split in ("train", "val", "test"):
    assert {int(src[split][i]["label"]) for i in range(len(src[split]))} == set(range(11))
    for i in range(len(src[split])):
      r = src[split][i]
      name = r["file_name"].decode()
      files[name] = split
      gt = truth[name]
      assert r["video"].shape == (gt["num_frames"], 112, 112, 3) and r["video"].dtype == np.uint8
      assert int(r["num_frames"]) == gt["num_frames"] and float(r["fps"]) == pytest.approx(gt["fps"], abs=0.01)
      assert float(r["ecg_fs"]) == gt["ecg_fs"]
      assert abs(len(r["ecg"]) - gt["num_frames"] / gt["fps"] * gt["ecg_fs"]) <= 1
      assert CLASSES[int(r["label"])] == gt["view"]
      # ECG -> R peaks -> ED frames agree with the generator's ground truth (nearest frame, +-1 for rounding)
      assert r["r_peaks"].dtype == np.int32 and len(r["r_peaks"]) == len(gt["ed_frames"]), name
      assert np.all(np.abs(r["r_peaks"] - gt["ed_frames"]) <= 1), name
      exact += int(np.array_equal(r["r_peaks"], gt["ed_frames"]))
      total += 1
  print(f"ED frames from ECG equal to ground truth: {exact}/{total}")
  assert exact >= 0.9 * total
  # deterministic split: rebuilding elsewhere gives the same assignment
  b2 = _build(good, tmp_path / "tfds2", "videos")
  src2 = tfds.data_source("echo_views/videos", data_dir=str(tmp_path / "tfds2"))
  again = {src2[s][i]["file_name"].decode(): s for s in ("train", "val", "test") for i in range(len(src2[s]))}
  assert again == files and b2.report.counts == b.report.counts
  # the grain frame sampler on a built record: 2K frames starting at a stored ED
  rec = dict(src["train"][0])
  idx = E.PhaseFrameSampler(4)(rec, np.random.default_rng(0))
  assert idx.shape == (8,) and np.all(np.diff(idx) >= 0)
  if len(E.record_phases(rec).cycles(int(rec["num_frames"]))):
    assert idx[0] in set(rec["r_peaks"].tolist())


def _small_copy(good, dst):
  """A copy of 3 views x 3 items (images + videos) of the good folder."""
  for kind in ("images", "videos"):
    for view in ("A2C", "PLAX", "M_MODE"):
      (dst / kind / view).mkdir(parents=True)
      for p in (good / kind / view).iterdir():
        if p.stem.split("_")[-1] in ("0000", "0001", "0002"):
          shutil.copy(p, dst / kind / view / p.name)
  return dst


def test_builder_broken_folder_reports_each_reason(tmp_path, good):
  root = _small_copy(good, tmp_path / "raw")
  # corrupt video, corrupt image, ECG CSV that does not parse, ECG shorter than the cine, unknown class, stray file
  (root / "videos" / "A2C" / "A2C_0000.avi").write_bytes(b"RIFF\x00\x00AVI not really" * 20)
  (root / "images" / "PLAX" / "PLAX_0001.png").write_bytes(b"\x89PNG broken")
  csv = root / "videos" / "PLAX" / "PLAX_0000.csv"
  lines = csv.read_text().splitlines()
  lines[5] = "0.016,not-a-number"
  csv.write_text("\n".join(lines) + "\n")
  short = root / "videos" / "M_MODE" / "M_MODE_0000.csv"
  lines = short.read_text().splitlines()
  short.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
  (root / "videos" / "A7C").mkdir()
  shutil.copy(root / "videos" / "A2C" / "A2C_0001.mp4", root / "videos" / "A7C" / "x.mp4")
  (root / "videos" / "A2C" / "notes.txt").write_text("hello")

  b = _build(root, tmp_path / "tfds", "videos")
  reasons = {i.file: i.reason for i in b.report.skipped}
  assert set(reasons) == {"videos/A2C/A2C_0000.avi", "videos/PLAX/PLAX_0000.avi", "videos/M_MODE/M_MODE_0000.avi",
                          "videos/A7C/x.mp4"}
  assert "unreadable video" in reasons["videos/A2C/A2C_0000.avi"]
  assert "ECG videos/PLAX/PLAX_0000.csv does not parse" in reasons["videos/PLAX/PLAX_0000.avi"]
  assert "row 5" in reasons["videos/PLAX/PLAX_0000.avi"]
  assert "ECG videos/M_MODE/M_MODE_0000.csv covers 0.00 to" in reasons["videos/M_MODE/M_MODE_0000.avi"]
  assert "but the video lasts" in reasons["videos/M_MODE/M_MODE_0000.avi"]
  assert "unknown class folder 'A7C'" in reasons["videos/A7C/x.mp4"]
  assert any(n.file == "videos/A2C/notes.txt" and "ignored" in n.reason for n in b.report.notes)
  assert sum(b.report.counts.values()) == 9 - 3  # 9 good cines, 3 of them broken (A7C is extra)
  summary = b.report.summary()
  assert "skipped rows: 4" in summary and "videos/A2C/A2C_0000.avi" in summary

  b = _build(root, tmp_path / "tfds", "images")
  assert [(i.file, "unreadable image" in i.reason) for i in b.report.skipped] == [("images/PLAX/PLAX_0001.png", True)]

  # strict: the first problem fails the build, naming the file (listing finds the unknown folder first) ...
  with pytest.raises(UserError, match=r"videos/A7C/x.mp4: unknown class folder"):
    _build(root, tmp_path / "tfds_strict", "videos", strict=True)
  # ... and, once that is fixed, the first broken cine of the first split that has one
  shutil.rmtree(root / "videos" / "A7C")
  with pytest.raises(UserError, match=r"(A2C_0000.avi: unreadable video|PLAX_0000.avi: ECG|M_MODE_0000.avi: ECG)"):
    _build(root, tmp_path / "tfds_strict2", "videos", strict=True)


def test_ecg_recorded_beyond_the_cine_is_cut_and_aligned(tmp_path, good):
  """An ECG CSV starting 0.5 s before the first frame and ending 0.7 s after the last: kept, cut to the cine,
  ED frames still equal to the ground truth."""
  root = _small_copy(good, tmp_path / "raw")
  shutil.rmtree(root / "images")
  truth = G.read_ground_truth(good)
  rel = "videos/A2C/A2C_0000.avi"
  gt = truth[rel]
  video_s = gt["num_frames"] / gt["fps"]
  hr = gt["hr_bpm"]
  first = gt["r_times_s"][0] + 0.5 - 60 / hr * np.ceil((gt["r_times_s"][0] + 0.5) / (60 / hr) - 1)
  ecg, r_t = synthesize_ecg(video_s + 1.2, 500.0, hr, first_r_s=first, rng=0)
  assert np.allclose((r_t - 0.5)[np.abs(r_t - 0.5 - gt["r_times_s"][0]).argmin()], gt["r_times_s"][0])
  E.write_ecg_csv(root / "videos" / "A2C" / "A2C_0000.csv", ecg, 500.0, start_s=-0.5)
  b = _build(root, tmp_path / "tfds", "videos")
  assert not b.report.skipped
  assert any(n.file == rel and "ECG cropped" in n.reason for n in b.report.notes)
  src = tfds.data_source("echo_views/videos", data_dir=str(tmp_path / "tfds"))
  recs = {src[s][i]["file_name"].decode(): src[s][i] for s in ("train", "val", "test") for i in range(len(src[s]))}
  r = recs[rel]
  assert abs(len(r["ecg"]) - video_s * 500.0) <= 1
  assert np.all(np.abs(r["r_peaks"] - gt["ed_frames"]) <= 1) and len(r["r_peaks"]) == len(gt["ed_frames"])
  # the stored trace starts at the first frame: its R peaks are the ground-truth times
  rp = E.detect_r_peaks(r["ecg"], 500.0)
  assert np.max(np.abs(rp.times[:len(gt["r_times_s"])] - gt["r_times_s"][:len(rp.times)])) < 0.02


def test_builder_keeps_ecg_with_gaps_and_reads_mat_records(tmp_path, good):
  """Missing ECG samples no longer skip a cine: 3 NaN samples in a WFDB record are bridged, a 0.5 s gap is stored as
  NaN, an empty CSV value is bridged, each noted; a PhysioNet-style .hea + .mat record is read (no 'ignored' note),
  and a .dat without its header is noted, not read."""
  wfdb = pytest.importorskip("wfdb")
  sio = pytest.importorskip("scipy.io")
  root = _small_copy(good, tmp_path / "raw")
  shutil.rmtree(root / "images")
  truth = G.read_ground_truth(good)
  d = root / "videos"

  def rewrite(stem, fn):
    rec = wfdb.rdrecord(str(stem))
    x = fn(rec.p_signal.copy())
    wfdb.wrsamp(stem.name, fs=rec.fs, units=rec.units, sig_name=rec.sig_name, p_signal=x, fmt=["16"],
                write_dir=str(stem.parent))
    return rec.fs

  def three_nans(x):
    x[[50, 51, 300], 0] = np.nan
    return x

  def quarter_gap(x):  # a quarter of the record (> 0.3 s) missing from sample 200
    x[200 : 200 + len(x) // 4] = np.nan
    return x

  rewrite(d / "A2C" / "A2C_0002", three_nans)
  gap_fs = rewrite(d / "M_MODE" / "M_MODE_0002", quarter_gap)
  csv = d / "PLAX" / "PLAX_0001.csv"
  lines = csv.read_text().splitlines()
  lines[10] = lines[10].split(",")[0] + ","
  csv.write_text("\n".join(lines) + "\n")
  stem = d / "PLAX" / "PLAX_0002"  # the WFDB record as PhysioNet Challenge .mat: MAT v4 'val', header '16+24'
  hea = stem.with_suffix(".hea")
  sio.savemat(stem.with_suffix(".mat"), {"val": wfdb.rdrecord(str(stem), physical=False).d_signal.T.astype(np.int16)},
              format="4")
  hea.write_text(hea.read_text().replace("PLAX_0002.dat 16 ", "PLAX_0002.mat 16+24 "))
  stem.with_suffix(".dat").unlink()
  (d / "A2C" / "A2C_0000.dat").write_bytes(b"\x00" * 64)  # a signal file whose header is missing

  b = _build(root, tmp_path / "tfds", "videos")
  assert not b.report.skipped, b.report.summary()
  notes = {}
  for n in b.report.notes:
    notes.setdefault(n.file, []).append(n.reason)
  assert any("ECG read: videos/A2C/A2C_0002.hea: 3 missing samples in 2 gaps" in r
             for r in notes["videos/A2C/A2C_0002.avi"])
  assert any("kept as missing samples (NaN" in r for r in notes["videos/M_MODE/M_MODE_0002.avi"])
  assert any("1 missing sample in 1 gap" in r for r in notes["videos/PLAX/PLAX_0001.mp4"])
  assert notes["videos/A2C/A2C_0000.dat"] == ["ignored: WFDB signal file without its header A2C_0000.hea"]
  assert "videos/PLAX/PLAX_0002.mat" not in notes
  src = tfds.data_source("echo_views/videos", data_dir=str(tmp_path / "tfds"))
  recs = {src[s][i]["file_name"].decode(): src[s][i] for s in ("train", "val", "test") for i in range(len(src[s]))}
  assert len(recs) == 9
  for rel in ("videos/A2C/A2C_0002.avi", "videos/PLAX/PLAX_0002.avi", "videos/PLAX/PLAX_0001.mp4"):
    r, gt = recs[rel], truth[rel]
    assert np.isfinite(r["ecg"]).all() and float(r["ecg_fs"]) == gt["ecg_fs"], rel
    assert len(r["r_peaks"]) == len(gt["ed_frames"]) and np.all(np.abs(r["r_peaks"] - gt["ed_frames"]) <= 1), rel
  r = recs["videos/M_MODE/M_MODE_0002.avi"]
  n_gap = int(np.isnan(r["ecg"]).sum())
  assert float(r["ecg_fs"]) == gap_fs and n_gap == len(r["ecg"]) // 4 > 0.15 * gap_fs
  assert np.isnan(r["ecg"][200 : 200 + n_gap]).all()


def test_builder_splits_csv_and_missing_folder(tmp_path, good):
  root = _small_copy(good, tmp_path / "raw")
  shutil.rmtree(root / "videos")
  files = sorted(p.relative_to(root).as_posix() for p in (root / "images").rglob("*.*"))
  rows = ["file,split"] + [f"{f},{['train', 'val', 'test'][i % 3]}" for i, f in enumerate(files[:-1])]
  (root / "splits.csv").write_text("\n".join(rows) + "\n")
  b = _build(root, tmp_path / "tfds", "images")
  assert dict(b.report.counts) == {"train": 3, "val": 3, "test": 2}
  assert [i.file for i in b.report.skipped] == [files[-1]] and "splits.csv" in b.report.skipped[0].reason
  with pytest.raises(UserError, match="videos.*not found"):
    _build(root, tmp_path / "tfds", "videos")
  from echojax.data.prepare import prepare

  with pytest.raises(UserError, match=r"videos not found or has no class folders.*'videos' config"):
    prepare("echo_views", root, tmp_path / "tfds_p", "videos", verbose=False)


def test_intensity_fallback_on_phantom_cine():
  """No ECG: the central-intensity cycle of an A4C phantom gives its period and ED frames."""
  fps, hr, n, r0 = 25.0, 120.0, 48, 0.1
  video = G.render_video("A4C", n, fps, hr, r0, np.random.default_rng(5))
  ph = E.intensity_phases(video)
  period = 60 / hr * fps
  print(f"intensity period {ph.period_frames:.2f} frames (truth {period:.2f})")
  assert ph.period_frames == pytest.approx(period, rel=0.08)
  truth_ed = (r0 + np.arange(0, 4) * 60 / hr) * fps  # 2.5, 15, 27.5, 40
  print(f"ED frames {ph.ed_frames}, truth {truth_ed}")
  assert len(ph.ed_frames) >= 2
  assert all(np.min(np.abs(truth_ed - e)) <= 2 for e in ph.ed_frames)
  idx = E.PhaseFrameSampler(4, source="intensity")({"video": video, "fps": fps}, None)
  assert idx.shape == (8,) and idx[0] in ph.ed_frames


def test_prepared_videos_feed_the_grain_pipeline_with_phase_sampling(tmp_path, good):
  """prepare (the one preparation command) -> grain loader with the ECG phase sampler: fixed-shape batches."""
  from echojax.data import pipeline
  from echojax.data.prepare import prepare

  root = _small_copy(good, tmp_path / "raw")
  prepare("echo_views", root, tmp_path / "tfds", "videos", verbose=False)
  cfg = dict(name="echo_views", data_dir=str(tmp_path / "tfds"), builder_config="videos", frames=8, batch_size=2,
             frame_sampler="ecg_phases_8", targets=["label"])
  batch = next(iter(pipeline.make_loader(cfg, "train", train=True, seed=0, process_index=0, process_count=1)))
  assert batch["video"].shape == (2, 8, 112, 112, 3) and batch["mask"].all()
  assert set(batch["label"].tolist()) <= {CLASSES.index(v) for v in ("A2C", "PLAX", "M_MODE")}
