"""grain pipeline: shapes/dtypes (train, eval, all clips, image preset), padding masks, normalisation, eval padding
rows, determinism, iterator-state round trip, the batch spec, augmentation, frame-sampler hook, errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from echojax.data import augment as aug
from echojax.data import pipeline, sources
from echojax.data.pipeline import build_loader, clip_starts, load_stats
from echojax.errors import UserError

S = 16
STATS = (np.array([10.0, 20.0, 30.0], np.float32), np.array([2.0, 4.0, 5.0], np.float32))


class FakeVideos:
  """In-memory random-access source with the echonet_dynamic feature keys. Frame t of video i has pixel value
  (i * 7 + t) % 256, so a batch tells which record and which frames were taken."""

  def __init__(self, lengths):
    self.lengths = list(lengths)
    self.reads = 0

  def __len__(self):
    return len(self.lengths)

  def __getitem__(self, i):
    self.reads += 1
    n = self.lengths[i]
    v = ((i * 7 + np.arange(n)) % 256).astype(np.uint8)[:, None, None, None] * np.ones((1, S, S, 3), np.uint8)
    return {"video": v, "num_frames": np.int32(n), "ef": np.float32(40 + i), "fps": np.float32(50.0),
            "ed_frame": np.int32(1), "es_frame": np.int32(3), "file_name": f"video{i}"}

  def __repr__(self):
    return f"FakeVideos({len(self)})"


class FakeImages:
  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    return {"image": np.full((S, S, 3), i, np.uint8), "label": np.int64(i % 3)}


def cfg(**kw):
  base = dict(frames=4, period=2, batch_size=4)
  base.update(kw)
  return base


def pixel(batch_video, stats=STATS):
  """Undo normalisation on channel 0 of the top-left pixel -> raw frame values (B, T)."""
  return np.rint(batch_video[:, :, 0, 0, 0] * stats[1][0] + stats[0][0]).astype(int)


def test_train_shapes_dtypes_and_clip_content():
  src = FakeVideos([20, 30, 40, 25, 35, 50, 22, 33])
  loader = build_loader(src, STATS, cfg(), "train", train=True, seed=0, process_index=0, process_count=1)
  b = next(loader)
  assert b["video"].shape == (4, 4, S, S, 3) and b["video"].dtype == np.float32
  assert b["mask"].shape == (4, 4) and b["mask"].dtype == bool and b["mask"].all()
  assert b["valid"].dtype == bool and b["valid"].all()
  assert b["index"].dtype == np.int32 and b["ef"].dtype == np.float32
  np.testing.assert_allclose(b["ef"], 40 + b["index"])
  raw = pixel(b["video"])
  for row, i in zip(raw, b["index"]):
    start = (row[0] - i * 7) % 256
    np.testing.assert_array_equal(row, (i * 7 + start + np.arange(4) * 2) % 256)  # period 2, consecutive
  # normalisation is per channel: the 3 channels hold the same raw value
  ch = b["video"][:, :, 0, 0, :] * STATS[1] + STATS[0]
  np.testing.assert_allclose(ch[..., 0], ch[..., 1], atol=1e-3)
  assert loader.steps_per_epoch == 2


def test_random_starts_vary_in_training():
  src = FakeVideos([60] * 8)
  loader = build_loader(src, STATS, cfg(batch_size=8), "train", train=True, seed=3, process_index=0, process_count=1)
  starts = set()
  for _ in range(3):
    b = next(loader)
    starts |= set(((pixel(b["video"])[:, 0] - b["index"] * 7) % 256).tolist())
  assert len(starts) > 3


def test_eval_one_clip_fixed_start_and_padding_rows():
  src = FakeVideos([20, 30, 40, 25, 35])
  loader = build_loader(src, STATS, cfg(), "val", train=False, seed=0, process_index=0, process_count=1)
  batches = list(loader)
  assert len(batches) == len(loader) == 2  # 5 rows -> 2 batches of 4, last padded with 3 invalid rows
  b = batches[-1]
  assert b["video"].shape == (4, 4, S, S, 3)
  np.testing.assert_array_equal(b["valid"], [True, False, False, False])
  np.testing.assert_array_equal(b["index"], [4, -1, -1, -1])
  assert not b["mask"][1:].any()
  raw = pixel(batches[0]["video"])
  np.testing.assert_array_equal(raw[:, 0], (batches[0]["index"] * 7) % 256)  # eval_start zero
  # centred start
  loader = build_loader(src, STATS, cfg(eval_start="center"), "val", train=False, seed=0, process_index=0,
                        process_count=1)
  b = next(loader)
  span = 3 * 2 + 1
  np.testing.assert_array_equal(pixel(b["video"])[:, 0], [(i * 7 + (n - span) // 2) % 256 for i, n in
                                                          zip(b["index"], [20, 30, 40, 25])])
  # iteration continues the current pass; once exhausted, the next pass starts again from the first batch
  assert [x["index"].tolist() for x in loader] == [[4, -1, -1, -1]]
  assert [x["index"].tolist() for x in loader] == [[0, 1, 2, 3], [4, -1, -1, -1]]


def test_all_clips_rows_cover_each_video():
  lengths = [20, 9, 33]
  src = FakeVideos(lengths)
  loader = build_loader(src, STATS, cfg(clips="all", batch_size=4), "test", train=False, seed=0, process_index=0,
                        process_count=1)
  rows = []
  for b in loader:
    assert "clip_id" in b and b["clip_id"].dtype == np.int32 and b["video"].shape == (4, 4, S, S, 3)
    raw = pixel(b["video"])
    for i, c, v, r in zip(b["index"], b["clip_id"], b["valid"], raw):
      if v:
        rows.append((int(i), int(c), int((r[0] - i * 7) % 256)))
  expected = [(i, c, s) for i, n in enumerate(lengths) for c, s in enumerate(clip_starts(n, 4, 2, 8))]
  assert rows == expected
  assert clip_starts(20, 4, 2, 8) == [0, 8, 13] and clip_starts(5, 4, 2, 8) == [0]
  assert clip_starts(20, 4, 2, 1) == list(range(14))  # stride 1 = every start (EchoNet test-time augmentation)


@pytest.mark.parametrize("pad_mode", ["zeros", "repeat"])
def test_short_video_padding_mask(pad_mode):
  src = FakeVideos([3, 40])  # span is 7 frames; video 0 has 3 -> frames 0, 2 real; 4, 6 padded
  loader = build_loader(src, STATS, cfg(batch_size=2, pad_mode=pad_mode), "val", train=False, seed=0,
                        process_index=0, process_count=1)
  b = next(loader)
  np.testing.assert_array_equal(b["mask"][0], [True, True, False, False])
  assert b["mask"][1].all()
  raw = pixel(b["video"])[0]
  np.testing.assert_array_equal(raw[:2], [0, 2])
  np.testing.assert_array_equal(raw[2:], [0, 0] if pad_mode == "zeros" else [2, 2])


def test_deterministic_for_seed_and_differs_across_seeds():
  src = FakeVideos([30 + i for i in range(12)])
  c = cfg(augment=dict(pad=2, rotation=10, brightness=0.1, contrast=0.1))

  def take(seed, k=3):
    loader = build_loader(src, STATS, c, "train", train=True, seed=seed, process_index=0, process_count=1)
    return [next(loader) for _ in range(k)]

  a, b, other = take(5), take(5), take(6)
  for x, y in zip(a, b):
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])
  assert any(not np.array_equal(x["video"], y["video"]) for x, y in zip(a, other))


def test_iterator_state_round_trip():
  src = FakeVideos([30 + i for i in range(10)])
  c = cfg(augment=dict(pad=2, rotation=5))
  loader = build_loader(src, STATS, c, "train", train=True, seed=1, process_index=0, process_count=1)
  for _ in range(3):  # k batches, crossing an epoch boundary (10 records / batch 4)
    next(loader)
  state = loader.get_state()
  json.loads(state)  # JSON-serialisable bytes
  expected = [next(loader) for _ in range(4)]
  restored = build_loader(src, STATS, c, "train", train=True, seed=1, process_index=0, process_count=1)
  restored.set_state(state)
  for want in expected:
    got = next(restored)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  wrong = build_loader(FakeVideos([30] * 11), STATS, c, "train", train=True, seed=1, process_index=0,
                       process_count=1)
  with pytest.raises(UserError, match="does not match"):
    wrong.set_state(state)


def _same_spec(loader_a, loader_b):
  """loader_a.spec() describes loader_b's first batch exactly, and asking for it left loader_a's stream alone."""
  spec = loader_a.spec()
  first = next(loader_b)
  assert sorted(spec) == sorted(first)
  for key, value in first.items():
    assert (spec[key].shape, spec[key].dtype) == (value.shape, value.dtype), key
  for key, value in next(loader_a).items():  # the spec read no batch from the stream
    np.testing.assert_array_equal(value, first[key])


@pytest.mark.parametrize("source, config, split", [
    (lambda: FakeVideos([20, 30, 40, 25, 35, 50, 22, 33]), cfg(augment=dict(pad=2, rotation=5)), "train"),
    (lambda: FakeVideos([20, 9, 40]), cfg(clips="all", batch_size=2), "val"),
    (lambda: FakeVideos([20, 30, 40, 25]), cfg(normalize="device"), "train"),
    (lambda: FakeImages(7), dict(preset="image", batch_size=4), "train"),
    (lambda: FakeVideos([20, 30]), dict(preset="image", batch_size=2, image_frame="es", size=8), "val"),
], ids=["video-train", "video-all-clips", "video-uint8", "image-train", "image-from-video"])
@pytest.mark.parametrize("process_count", [1, 2])
def test_spec_is_a_batch_without_reading_one(source, config, split, process_count):
  def make():
    return build_loader(source(), STATS, config, split, train=split == "train", seed=0, process_index=0,
                        process_count=process_count)

  assert make().spec()["index"].shape == (config["batch_size"] // process_count,)  # the LOCAL batch
  _same_spec(make(), make())


def test_in_process_shards_are_disjoint_and_complete():
  src = FakeVideos([20] * 11)
  seen = []
  for p in range(2):
    loader = build_loader(src, STATS, cfg(batch_size=4), "val", train=False, seed=0, process_index=p,
                          process_count=2)
    assert loader.local_batch_size == 2
    idx = np.concatenate([b["index"][b["valid"]] for b in loader])
    assert len(loader) == 3
    seen.append(set(idx.tolist()))
  assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(11))
  with pytest.raises(UserError, match="divisible"):
    build_loader(src, STATS, cfg(batch_size=3), "val", train=False, seed=0, process_index=0, process_count=2)


def test_image_preset_and_image_from_video():
  loader = build_loader(FakeImages(7), STATS, dict(preset="image", batch_size=4, augment=dict(rotation=10, shift=0.1,
                                                                                              zoom=0.1)),
                        "train", train=True, seed=0, process_index=0, process_count=1)
  b = next(loader)
  assert b["image"].shape == (4, S, S, 3) and b["image"].dtype == np.float32
  assert b["label"].dtype == np.int32 and "mask" not in b and "video" not in b
  np.testing.assert_array_equal(b["label"], b["index"] % 3)
  loader = build_loader(FakeVideos([20, 30]), STATS, dict(preset="image", batch_size=2, image_frame="es", size=8),
                        "val", train=False, seed=0, process_index=0, process_count=1)
  b = next(loader)
  assert b["image"].shape == (2, 8, 8, 3)
  np.testing.assert_array_equal(np.rint(b["image"][:, 0, 0, 0] * 2 + 10), [3, 10])  # es_frame = 3


def gated_sampler(record, rng):
  """A stand-in for ECG-gated phase sampling: frames ed_frame, es_frame, then beyond the end (padding)."""
  return [int(record["ed_frame"]), int(record["es_frame"]), int(record["num_frames"]) + 5, -1]


def test_frame_sampler_hook():
  pipeline.register_frame_sampler("test_gated", gated_sampler)
  src = FakeVideos([20, 30])
  for kwargs in (dict(frame_sampler=gated_sampler), {}):
    c = cfg(batch_size=2) if kwargs else cfg(batch_size=2, frame_sampler="test_gated")
    loader = build_loader(src, STATS, c, "train", train=True, seed=0, process_index=0, process_count=1, **kwargs)
    b = next(loader)
    np.testing.assert_array_equal(b["mask"], [[True, True, False, False]] * 2)
    np.testing.assert_array_equal(pixel(b["video"])[:, :2], np.stack([(b["index"] * 7 + 1), (b["index"] * 7 + 3)], 1))
  with pytest.raises(UserError, match="unknown frame sampler"):
    build_loader(src, STATS, cfg(frame_sampler="nope"), "train", train=True, seed=0, process_index=0,
                 process_count=1)


def test_ecg_phase_samplers_are_found_by_name(monkeypatch):
  """data.frame_sampler='ecg_phases_<N>' works without registering the ECG samplers first; unknown names (also an
  ecg_phases_ size that does not exist) stay a UserError that lists what is registered."""
  from echojax.data import ecg, samplers

  monkeypatch.setattr(samplers, "_FRAME_SAMPLERS", {})  # a fresh registry: nothing registered yet
  fn = pipeline.get_frame_sampler("ecg_phases_8")
  assert isinstance(fn, ecg.PhaseFrameSampler) and fn.num_frames_out == 8
  assert sorted(samplers._FRAME_SAMPLERS) == ["ecg_phase_frame", "ecg_phases_16", "ecg_phases_32", "ecg_phases_4",
                                              "ecg_phases_8"]
  monkeypatch.setattr(samplers, "_FRAME_SAMPLERS", {})
  loader = build_loader(FakeVideos([20, 30]), STATS, cfg(batch_size=2, frame_sampler="ecg_phases_4"), "train",
                        train=True, seed=0, process_index=0, process_count=1)
  assert next(loader)["video"].shape == (2, 4, S, S, 3)
  monkeypatch.setattr(samplers, "_FRAME_SAMPLERS", {})
  assert isinstance(pipeline.get_frame_sampler("ecg_phase_frame"), samplers.OnePhaseFrame)  # the image one too
  for name in ("nope", "ecg_phases_7"):
    with pytest.raises(UserError, match=rf"unknown frame sampler '{name}' \(config field data.frame_sampler\); "
                                        r"registered: ecg_phase_frame, ecg_phases_16, ecg_phases_32, "
                                        r"ecg_phases_4, ecg_phases_8\."):
      pipeline.get_frame_sampler(name)


def test_frame_sampler_gets_no_generator_in_evaluation():
  """Training samplers get a per-sample Generator; evaluation passes None, so eval frames never depend on the seed."""
  got = []

  def sampler(record, rng):
    got.append(rng)
    n = int(record["num_frames"])
    start = 0 if rng is None else int(rng.integers(0, n - 4))
    return list(range(start, start + 4))

  src = FakeVideos([20, 30])
  train = build_loader(src, STATS, cfg(batch_size=2), "train", train=True, seed=0, process_index=0, process_count=1,
                       frame_sampler=sampler)
  next(train)
  assert got and all(isinstance(r, np.random.Generator) for r in got)
  got.clear()
  evals = [next(build_loader(src, STATS, cfg(batch_size=2), "val", train=False, seed=s, process_index=0,
                             process_count=1, frame_sampler=sampler)) for s in (0, 1)]
  assert got and all(r is None for r in got)
  np.testing.assert_array_equal(evals[0]["video"], evals[1]["video"])


def test_augment_same_transform_for_all_frames_and_deterministic():
  rng = np.random.default_rng(0)
  frames = np.repeat(rng.integers(0, 255, (1, S, S, 3), dtype=np.uint8), 5, axis=0)
  opts = aug.check_options(dict(pad=3, rotation=15, zoom=0.1, shift=0.05))
  p1 = aug.sample_params(np.random.default_rng(7), opts, S, S)
  p2 = aug.sample_params(np.random.default_rng(7), opts, S, S)
  assert p1 == p2 and not p1.is_geometric_identity
  out = aug.apply_geometric(frames, p1)
  assert out.shape == frames.shape and out.dtype == np.uint8
  for t in range(1, 5):
    np.testing.assert_array_equal(out[t], out[0])  # identical frames stay identical
  # pad + crop alone is an exact integer shift with black fill
  shift = aug.AugmentParams(dx=2, dy=-1)
  moved = aug.apply_geometric(frames, shift)
  np.testing.assert_array_equal(moved[:, :-1, 2:], frames[:, 1:, :-2])
  assert (moved[:, :, :2] == 0).all() and (moved[:, -1:] == 0).all()
  draws = [aug.sample_params(np.random.default_rng(s), dict(pad=2), S, S) for s in range(200)]
  assert {d.dx for d in draws} == {-2.0, -1.0, 0.0, 1.0, 2.0}
  with pytest.raises(UserError, match="unknown augmentation"):
    aug.check_options(dict(rotate=3))
  # fill: the paper colour of an ECG printout comes in at the borders, for shifts and for warps alike
  white = aug.sample_params(np.random.default_rng(7), aug.check_options(dict(rotation=15, fill=255)), S, S)
  assert white.fill == 255.0 and white.angle == p1.angle  # the same draws as without fill
  warped = aug.apply_geometric(np.zeros_like(frames), dataclasses.replace(white, scale=0.7))  # corners outside
  assert warped[0, 0, 0].tolist() == [255, 255, 255] and warped[0, S // 2, S // 2].tolist() == [0, 0, 0]
  moved = aug.apply_geometric(frames, aug.AugmentParams(dx=2, dy=-1, fill=255))
  assert (moved[:, :, :2] == 255).all()
  with pytest.raises(UserError, match="fill"):
    aug.check_options(dict(fill=300))


def test_transform_converts_only_the_clip_to_float():
  """Memory during the per-sample transform stays at clip scale: the stored uint8 video (2,000 frames here) is
  sliced first, so no float copy of the whole video is ever made."""
  import tracemalloc

  src = FakeVideos([2000])
  loader = build_loader(src, STATS, cfg(batch_size=1, augment=dict(pad=2, rotation=5)), "train", train=True,
                        seed=0, process_index=0, process_count=1)
  transform = loader.dataloader._operations[0]
  element = pipeline.RowSource(src, np.array([[0, 0, -1, 1]]), "x")[0]  # record read outside the measurement
  whole_video_float = 2000 * S * S * 3 * 4
  tracemalloc.start()
  out = transform.random_map(element, np.random.default_rng(0))
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  assert out["video"].shape == (4, S, S, 3)
  assert peak < whole_video_float / 20, peak


def test_stats_and_config_errors(tmp_path):
  (tmp_path / "echojax_stats.json").write_text(json.dumps({"video": {"mean": [1, 2, 3], "std": [1, 1, 1]}}))
  mean, std = load_stats(tmp_path / "echojax_stats.json", "video")
  np.testing.assert_array_equal(mean, [1, 2, 3])
  with pytest.raises(UserError, match="echojax.data.prepare"):
    load_stats(tmp_path / "missing" / "echojax_stats.json")
  with pytest.raises(UserError, match="data.preset"):
    build_loader(FakeVideos([5]), STATS, dict(preset="audio"), "train", train=True, seed=0, process_index=0,
                 process_count=1)
  with pytest.raises(UserError, match="data.targets"):
    next(build_loader(FakeVideos([9, 9]), STATS, cfg(batch_size=2, targets=["lvef"]), "train", train=True, seed=0,
                      process_index=0, process_count=1))


def test_targets_cover_the_whole_split():
  src = FakeVideos([10, 12, 14, 16, 18])
  loader = build_loader(src, STATS, cfg(batch_size=2), "train", train=True, seed=0, process_index=1, process_count=2)
  t = loader.targets(["ef", "num_frames"])
  np.testing.assert_allclose(t["ef"], [40, 41, 42, 43, 44])
  np.testing.assert_array_equal(t["num_frames"], [10, 12, 14, 16, 18])
  with pytest.raises(UserError, match="not a feature"):
    loader.targets("label")


def test_all_clips_reads_each_video_once_per_pass():
  src = FakeVideos([40, 40, 40])  # 3 clips each with stride 8 and span 7 -> 5 clips; rows of a video are adjacent
  loader = build_loader(src, STATS, cfg(clips="all", batch_size=4, read_threads=0, prefetch=0), "test",
                        train=False, seed=0, process_index=0, process_count=1)
  before = src.reads
  rows = sum(int(b["valid"].sum()) for b in loader)
  assert rows == 3 * len(clip_starts(40, 4, 2, 8))
  assert src.reads - before <= 3 + 1  # each video once (+ record 0 again for the padding rows)


# ------------------------------------------------------------------------------------------------------------------
# the real path: synthetic EchoNet-Dynamic phantoms -> echonet_dynamic builder (prepare) -> make_loader


@pytest.fixture(scope="module")
def echonet_data(tmp_path_factory):
  from echojax.data.prepare import prepare
  from echojax.data.synthetic import echonet as gen

  root = tmp_path_factory.mktemp("echonet")
  raw = gen.generate(root / "raw", 12, 0)
  prepare("echonet_dynamic", raw, root / "data", config="28", verbose=False)
  return str(root / "data")


def test_real_builder_records_are_viewed_without_copies(echonet_data):
  import tensorflow_datasets as tfds

  import tfds_builders.echonet_dynamic  # noqa: F401

  src = tfds.builder("echonet_dynamic", config="28", data_dir=echonet_data).as_data_source(split="train")
  fast = pipeline.fast_source(src)
  assert isinstance(fast, pipeline.FastTfdsSource)
  for i in range(len(src)):
    a, b = fast[i], src[i]
    assert sources._same_record(a, b)
    assert not a["video"].flags.owndata  # a view into the record bytes: clips are the only copies
  assert pipeline.fast_source([{"video": np.zeros((1, 2, 2, 3), np.uint8)}]) is not None  # non-TFDS: unchanged


def test_make_loader_on_prepared_echonet(echonet_data, monkeypatch):
  c = dict(name="echonet_dynamic", data_dir=echonet_data, builder_config="28", frames=8, period=2, batch_size=4,
           augment=dict(pad=2, rotation=5))
  loader = pipeline.make_loader(c, "train", train=True, seed=0, process_index=0, process_count=1)
  b = next(loader)
  assert b["video"].shape == (4, 8, 28, 28, 3) and b["video"].dtype == np.float32
  assert b["mask"].all() and b["ef"].dtype == np.float32 and ((b["ef"] > 0) & (b["ef"] < 100)).all()
  assert abs(float(b["video"].mean())) < 1.5  # normalised with the prepared stats
  ev = pipeline.make_loader(dict(c, clips="all"), "train", train=False, seed=0, process_index=0, process_count=1)
  nf = ev.targets("num_frames")["num_frames"]
  rows = [(int(i), int(k)) for bb in ev for i, k, v in zip(bb["index"], bb["clip_id"], bb["valid"]) if v]
  assert len(rows) == sum(len(clip_starts(int(n), 8, 2, 16)) for n in nf)
  assert sorted({i for i, _ in rows}) == list(range(len(nf)))
  monkeypatch.setattr(pipeline, "STATS_FILE", "missing_stats.json")
  with pytest.raises(UserError, match="python -m echojax.data.prepare"):
    pipeline.make_loader(c, "train", train=True, seed=0, process_index=0, process_count=1)
  with pytest.raises(UserError, match="available splits"):
    pipeline.make_loader(c, "validation", train=False, seed=0, process_index=0, process_count=1)


def test_frame_store_and_tfds_records_give_identical_batches(echonet_data):
  """make_loader reads the memmap frame store when prepare wrote one; the batches equal those of the TFDS path."""
  import tensorflow_datasets as tfds

  import tfds_builders.echonet_dynamic  # noqa: F401

  c = dict(name="echonet_dynamic", data_dir=echonet_data, builder_config="28", frames=8, period=2, batch_size=4,
           augment=dict(pad=2, rotation=5, brightness=0.1))
  src, version_dir = pipeline.open_source(c, "train")
  assert isinstance(src, pipeline.PreadFrameStore)  # frame store, read with pread (no mapped pages in RSS)
  from echojax.data.framestore import open_frame_store

  store = open_frame_store(version_dir, "echonet_dynamic", "train")
  for i in range(len(store)):
    lazy, mm = src[i]["video"], store[i]["video"]
    assert lazy.shape == mm.shape and src[i]["num_frames"] == store[i]["num_frames"]
    np.testing.assert_array_equal(lazy.take([0, 2, 3, 4, len(mm) - 1]), mm[[0, 2, 3, 4, len(mm) - 1]])
    np.testing.assert_array_equal(np.asarray(lazy), mm)
  tfds_src = pipeline.fast_source(tfds.builder("echonet_dynamic", config="28", data_dir=echonet_data)
                                  .as_data_source(split="train"))
  stats = load_stats(version_dir / "echojax_stats.json", "video")
  still = dict(c, preset="image", image_frame="random", size=32, augment=dict(pad=2))  # resized still frames
  for cfg, train in ((c, True), (c, False), (still, True), (dict(still, normalize="device"), True)):
    a = build_loader(src, stats, cfg, "train", train=train, seed=4, process_index=0, process_count=1)
    b = build_loader(tfds_src, stats, cfg, "train", train=train, seed=4, process_index=0, process_count=1)
    for _ in range(3):
      x, y = next(a), next(b)
      assert x.keys() == y.keys()
      for key in x:
        assert x[key].dtype == y[key].dtype
        np.testing.assert_array_equal(x[key], y[key])


def test_shift_fused_into_the_read_equals_shift_after_it(tmp_path):
  """LazyFrames.take(shift=...) (pad + crop done during the pread) equals reading, then shifting with zero fill,
  for shifts of every sign, runs of consecutive frames, and the last frames of the file."""
  rng = np.random.default_rng(0)
  frames = rng.integers(1, 256, size=(9, 7, 6, 3), dtype=np.uint8)  # no zero pixels: a missed fill would show
  path = tmp_path / "v.frames"
  path.write_bytes(b"\xff" * 5 + frames.tobytes())  # a non-zero offset, as for any record but the first
  lazy = pipeline.LazyFrames(str(path), 5, 9, (7, 6, 3))
  for idx in ([0, 1, 2, 3], [8], [2, 4, 5, 6, 8], [7, 8, 0, 1]):
    for dy in (-7, -3, -1, 0, 2, 6):
      for dx in (-6, -2, 0, 1, 5):
        got = lazy.take(idx, shift=(dy, dx))
        want = aug.apply_geometric(frames[idx], aug.AugmentParams(dx=dx, dy=dy))
        np.testing.assert_array_equal(got, want, err_msg=f"idx={idx} dy={dy} dx={dx}")


def test_pad_crop_fused_in_the_frame_store_read_matches_the_tfds_path(echonet_data, monkeypatch):
  """With pad-only augmentation (echonet_ef's) the frame store applies the shift while reading (apply_geometric is
  never called); the batches equal those of the TFDS records, which shift after slicing."""
  import tensorflow_datasets as tfds

  import tfds_builders.echonet_dynamic  # noqa: F401

  c = dict(name="echonet_dynamic", data_dir=echonet_data, builder_config="28", frames=8, period=2, batch_size=4,
           augment=dict(pad=3), normalize="device")
  src, version_dir = pipeline.open_source(c, "train")
  assert isinstance(src, pipeline.PreadFrameStore)
  tfds_src = pipeline.fast_source(tfds.builder("echonet_dynamic", config="28", data_dir=echonet_data)
                                  .as_data_source(split="train"))
  stats = load_stats(version_dir / "echojax_stats.json", "video")
  calls = []
  real = aug.apply_geometric
  monkeypatch.setattr(aug, "apply_geometric", lambda clip, params: calls.append(params) or real(clip, params))
  a = build_loader(src, stats, c, "train", train=True, seed=1, process_index=0, process_count=1)
  fused = [next(a) for _ in range(3)]
  assert calls == []
  b = build_loader(tfds_src, stats, c, "train", train=True, seed=1, process_index=0, process_count=1)
  for x in fused:
    y = next(b)
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])
  assert any(p.dx or p.dy for p in calls)  # the reference path really shifted


def test_device_normalisation_equals_host(echonet_data):
  """normalize='device' ships uint8 clips; the trainer's model input normalises them to the host-mode batch."""
  from echojax import schema
  from echojax.run import make_model_input

  base = dict(name="echonet_dynamic", data_dir=echonet_data, builder_config="28", frames=8, period=2, batch_size=4)
  host = next(pipeline.make_loader(dict(base), "val", train=False, seed=0, process_index=0, process_count=1))
  dev_cfg = dict(base, normalize="device")
  dev = next(pipeline.make_loader(dev_cfg, "val", train=False, seed=0, process_index=0, process_count=1))
  assert dev["video"].dtype == np.uint8 and host["video"].dtype == np.float32
  np.testing.assert_array_equal(dev["index"], host["index"])
  config = schema.fill_defaults({"data": dev_cfg})  # a run config, completed as load_config / read_config do
  x = np.asarray(make_model_input(config)({"video": dev["video"]}))
  np.testing.assert_allclose(x, host["video"], rtol=1e-5, atol=1e-4)
  assert make_model_input(schema.fill_defaults({"data": base}))({"video": host["video"]}) is host["video"]
  with pytest.raises(UserError, match="brightness"):
    pipeline.make_loader(dict(dev_cfg, augment=dict(brightness=0.1)), "train", train=True, seed=0,
                         process_index=0, process_count=1)


def test_value_range_unit_scales_to_0_1(echonet_data):
  """data.value_range='unit': batches are the stored pixels / 255, exactly what EchoSDNet's custom loader gave
  (the pipeline with mean 0 and std 255 on 3 channels), for clips and still images, normalised on the host or on
  the device (input_normalization); 'dataset' is the default's name; other values are a named UserError."""
  from echojax import schema
  from echojax.run import make_model_input

  base = dict(name="echonet_dynamic", data_dir=echonet_data, builder_config="28", frames=8, period=2, batch_size=2)  # the val split of 12 phantoms is small
  src, _ = pipeline.open_source(base, "val")
  old_stats = (np.zeros(3, np.float32), np.full(3, 255.0, np.float32))  # experiments/echosdnet.py's make_loader
  for c, key in ((base, "video"), (dict(base, preset="image", size=16, augment=dict(rotation=10)), "image")):
    unit = dict(c, value_range="unit", input_key=key)
    for train in (False, True):
      got = next(pipeline.make_loader(unit, "val", train=train, seed=2, process_index=0, process_count=1))
      old = next(build_loader(src, old_stats, unit, "val", train=train, seed=2, process_index=0, process_count=1))
      raw = next(build_loader(src, STATS, dict(unit, normalize="device"), "val", train=train, seed=2,
                              process_index=0, process_count=1))
      assert got[key].dtype == np.float32 and raw[key].dtype == np.uint8
      np.testing.assert_array_equal(got[key], old[key])
      np.testing.assert_allclose(got[key], raw[key] / 255.0, rtol=1e-6, atol=0)
      assert 0.0 <= got[key].min() and got[key].max() <= 1.0
    dev_cfg = dict(unit, normalize="device")
    mean, std = pipeline.input_normalization(dev_cfg)
    np.testing.assert_array_equal(mean, 0.0)
    np.testing.assert_array_equal(std, 255.0)
    dev = next(pipeline.make_loader(dev_cfg, "val", train=False, seed=0, process_index=0, process_count=1))
    host = next(pipeline.make_loader(unit, "val", train=False, seed=0, process_index=0, process_count=1))
    x = np.asarray(make_model_input(schema.fill_defaults({"data": dev_cfg}))({key: dev[key]}))
    np.testing.assert_allclose(x, host[key], rtol=1e-6, atol=1e-7)
  default = next(pipeline.make_loader(base, "val", train=False, seed=0, process_index=0, process_count=1))
  named = next(pipeline.make_loader(dict(base, value_range="dataset"), "val", train=False, seed=0, process_index=0,
                                    process_count=1))
  np.testing.assert_array_equal(default["video"], named["video"])
  assert pipeline.input_normalization(dict(base, value_range="unit")) is None  # host mode: already scaled
  for call in (lambda c: pipeline.make_loader(c, "val", train=False, seed=0, process_index=0, process_count=1),
               lambda c: build_loader(FakeVideos([9]), STATS, c, "val", train=False, seed=0, process_index=0,
                                      process_count=1),
               lambda c: pipeline.input_normalization(dict(c, normalize="device"))):
    with pytest.raises(UserError, match=r"data\.value_range is '0-1'; use None .*'dataset'.*'unit'"):
      call(dict(base, value_range="0-1"))


@pytest.mark.parametrize("normalize", ["host", "device"])
def test_spec_of_prepared_data_is_a_batch(echonet_data, normalize):
  """The prepared data's frame store (clips read straight into the batch) gives the batches spec() describes."""
  c = dict(name="echonet_dynamic", data_dir=echonet_data, builder_config="28", frames=8, period=2, batch_size=4,
           normalize=normalize)
  for train, extra in ((True, {}), (False, {"clips": "all"})):
    a, b = (pipeline.make_loader(dict(c, **extra), "train", train=train, seed=0, process_index=0, process_count=1)
            for _ in range(2))
    _same_spec(a, b)


def test_worker_processes_give_the_same_eval_clips(echonet_data):
  """worker_count=1: the transform, the frame store and the batch function run in a grain worker process; every
  record's eval clip (deterministic) equals the in-process loader's, and each record comes exactly once."""
  c = dict(name="echonet_dynamic", data_dir=echonet_data, builder_config="28", frames=8, period=2, batch_size=4,
           normalize="device")
  batches = {}
  for workers in (0, 1):
    loader = pipeline.make_loader(dict(c, worker_count=workers), "train", train=False, seed=0, process_index=0,
                                  process_count=1)
    got = {}
    for b in loader:
      assert b["video"].shape == (4, 8, 28, 28, 3) and b["video"].dtype == np.uint8
      for i, v, ok in zip(b["index"], b["video"], b["valid"]):
        if ok:
          assert int(i) not in got
          got[int(i)] = v
    batches[workers] = got
  assert sorted(batches[0]) == sorted(batches[1]) == list(range(loader.num_examples))
  for i, v in batches[0].items():
    np.testing.assert_array_equal(v, batches[1][i])


def test_a_train_batch_larger_than_the_split_is_a_named_error():
  with pytest.raises(UserError, match=r"data.batch_size=8 is larger than the 5 examples of the 'train' split"):
    build_loader(FakeVideos([20] * 5), STATS, cfg(batch_size=8), "train", train=True, seed=0, process_index=0,
                 process_count=1)
  evl = build_loader(FakeVideos([20] * 5), STATS, cfg(batch_size=8), "val", train=False, seed=0, process_index=0,
                     process_count=1)  # evaluation pads its one batch instead
  assert int(next(iter(evl))["valid"].sum()) == 5
