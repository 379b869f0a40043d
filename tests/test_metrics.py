"""echojax.metrics: hand-computed cases, agreement with scikit-learn, NaN-with-a-note edge cases, bootstrap CIs."""

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from echojax import metrics as M
from echojax.metrics import bootstrap as B
from echojax.errors import UserError


def _random_probs(rng, n, c, signal=1.5):
  labels = rng.integers(0, c, n)
  logits = rng.normal(size=(n, c))
  logits[np.arange(n), labels] += signal
  p = np.exp(logits)
  return labels, p / p.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------------ ranking metrics


def test_ranking_metrics_match_sklearn_with_ties():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 2, 300)
  s = np.round(rng.random(300) + 0.4 * y, 1)  # coarse rounding -> many ties
  assert M.auroc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
  assert M.average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
  fpr, tpr, thr = M.roc_curve(y, s)
  fpr2, tpr2, _ = skm.roc_curve(y, s, drop_intermediate=False)
  np.testing.assert_allclose(fpr, fpr2)
  np.testing.assert_allclose(tpr, tpr2)
  assert thr[0] == np.inf and np.all(np.diff(thr[1:]) < 0)
  prec, rec, _ = M.precision_recall_curve(y, s)
  prec2, rec2, _ = skm.precision_recall_curve(y, s)
  np.testing.assert_allclose(prec, prec2[::-1])
  np.testing.assert_allclose(rec, rec2[::-1])


def test_auroc_hand_computed():
  # positives 0.8, 0.4; negatives 0.6, 0.2 -> pairs (0.8>0.6, 0.8>0.2, 0.4<0.6, 0.4>0.2) = 3/4
  assert M.auroc([1, 1, 0, 0], [0.8, 0.4, 0.6, 0.2]) == pytest.approx(0.75)
  # a tie between a positive and a negative counts one half
  assert M.auroc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
  assert math.isnan(M.auroc([1, 1, 1], [0.1, 0.2, 0.3]))
  assert math.isnan(M.average_precision([0, 0], [0.1, 0.2]))


def test_ranking_one_class_is_nan_without_warnings_and_bad_inputs_raise():
  import warnings

  with warnings.catch_warnings():
    warnings.simplefilter("error")  # scikit-learn's one-class warnings must not reach the caller
    assert math.isnan(M.auroc([0, 0, 0], [0.1, 0.5, 0.5]))
    assert math.isnan(M.average_precision([0, 0, 0], [0.1, 0.5, 0.5]))  # scikit-learn itself says 0.0
    fpr, tpr, thr = M.roc_curve([0, 0, 0], [0.1, 0.5, 0.5])
    prec, rec, _ = M.precision_recall_curve([0, 0, 0], [0.1, 0.5, 0.5])
  np.testing.assert_allclose(fpr, [0.0, 2 / 3, 1.0])
  assert np.isnan(tpr).all() and thr[0] == np.inf and list(thr[1:]) == [0.5, 0.1]
  assert rec[0] == 0.0 and np.isnan(rec[1:]).all()  # scikit-learn sets recall to 1 here
  np.testing.assert_allclose(prec, [1.0, 0.0, 0.0])
  with pytest.raises(UserError, match="score: contains 1 NaN"):
    M.auroc([0, 1], [0.1, float("nan")])
  with pytest.raises(UserError, match="y_true has 2 examples but score has 3"):
    M.roc_curve([0, 1], [0.1, 0.2, 0.3])
  with pytest.raises(UserError, match="y_true: binary labels must be 0/1"):
    M.precision_recall_curve([0, 3], [0.1, 0.2])


# ------------------------------------------------------------------------------------------------ regression


def test_regression_perfect_predictions():
  y = np.array([20.0, 35.0, 50.0, 65.0, 70.0])
  r = M.regression_metrics(y, y.copy(), bootstrap=200)
  assert r["mae"] == 0.0 and r["rmse"] == 0.0 and r["r2"] == 1.0 and r["bias"] == 0.0
  assert r["mae_ci_low"] == 0.0 and r["mae_ci_high"] == 0.0
  assert r["n"] == 5
  json.dumps(r)  # plain python values


def test_regression_hand_computed_and_sklearn():
  y = np.array([10.0, 20.0, 30.0, 40.0])
  p = np.array([12.0, 18.0, 33.0, 40.0])  # errors +2, -2, +3, 0
  r = M.regression_metrics(y, p, bootstrap=0)
  assert r["mae"] == pytest.approx(7 / 4)
  assert r["rmse"] == pytest.approx(math.sqrt(17 / 4))
  assert r["r2"] == pytest.approx(1 - 17 / 500)  # ss_tot = 225+25+25+225
  assert r["bias"] == pytest.approx(3 / 4)
  assert "mae_ci_low" not in r  # bootstrap=0 turns the CIs off
  rng = np.random.default_rng(1)
  yt = rng.uniform(15, 75, 500)
  yp = yt + rng.normal(0, 5, 500)
  r = M.regression_metrics(yt, yp, bootstrap=0)
  assert r["mae"] == pytest.approx(skm.mean_absolute_error(yt, yp))
  assert r["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(yt, yp)))
  assert r["r2"] == pytest.approx(skm.r2_score(yt, yp))


def test_bootstrap_ci_contains_estimate_shrinks_with_n_and_is_seeded():
  rng = np.random.default_rng(2)

  def data(n):
    yt = rng.uniform(15, 75, n)
    return yt, yt + rng.normal(0, 5, n)

  small = M.regression_metrics(*data(50), bootstrap=1000, seed=0)
  big = M.regression_metrics(*data(2000), bootstrap=1000, seed=0)
  for r in (small, big):
    for k in ("mae", "rmse", "r2"):
      assert r[f"{k}_ci_low"] <= r[k] <= r[f"{k}_ci_high"], (k, r)
  for k in ("mae", "rmse", "r2"):
    assert big[f"{k}_ci_high"] - big[f"{k}_ci_low"] < 0.5 * (small[f"{k}_ci_high"] - small[f"{k}_ci_low"])
  yt, yp = data(100)
  a = M.regression_metrics(yt, yp, seed=3)
  assert a == M.regression_metrics(yt, yp, seed=3)
  assert a["mae_ci_low"] != M.regression_metrics(yt, yp, seed=4)["mae_ci_low"]
  narrow = M.regression_metrics(yt, yp, seed=3, ci=0.5)
  assert a["mae_ci_low"] < narrow["mae_ci_low"] <= narrow["mae_ci_high"] < a["mae_ci_high"]


def test_regression_bootstrap_equals_sklearn_on_the_same_resamples():
  """The vectorised regression bootstrap gives, per resample, scikit-learn's MAE / RMSE / R2 on the same indices,
  also across chunk boundaries (the chunk size is forced small), and the CIs are their percentiles."""
  from unittest import mock

  rng = np.random.default_rng(0)
  n, num = 50, 120
  yt = rng.uniform(15, 75, n)
  yp = yt + rng.normal(0, 5, n)
  with mock.patch.object(B, "_BOOTSTRAP_CHUNK_ELEMENTS", 50 * 32):  # 32 resamples per chunk: 4 chunks
    m = M.regression_metrics(yt, yp, bootstrap=num, seed=9)
    boot = B._bootstrap_regression(yt, yp - yt, num, seed=9)
  draw = np.random.default_rng(9)
  idx = np.concatenate([draw.integers(0, n, size=(b, n)) for b in (32, 32, 32, 24)])
  want = {"mae": [skm.mean_absolute_error(yt[i], yp[i]) for i in idx],
          "rmse": [math.sqrt(skm.mean_squared_error(yt[i], yp[i])) for i in idx],
          "r2": [skm.r2_score(yt[i], yp[i]) for i in idx]}
  for name, vals in want.items():
    np.testing.assert_allclose(boot[name], vals, rtol=1e-10, atol=1e-12)
    low, high = np.quantile(vals, [0.025, 0.975])
    assert m[f"{name}_ci_low"] == pytest.approx(low) and m[f"{name}_ci_high"] == pytest.approx(high)


def test_regression_constant_targets_give_nan_r2_with_note():
  r = M.regression_metrics([50.0, 50.0, 50.0], [48.0, 52.0, 50.0], bootstrap=100)
  assert math.isnan(r["r2"]) and math.isnan(r["r2_ci_low"])
  assert r["mae"] == pytest.approx(4 / 3)
  assert any("r2 is NaN" in n for n in r["notes"])


@pytest.mark.parametrize("y_true,y_pred,match", [
    ([1.0, 2.0], [1.0], "y_true has 2 examples but y_pred has 1"),
    ([1.0, float("nan")], [1.0, 2.0], "y_true: contains 1 NaN"),
    ([], [], "y_true: is empty"),
    (np.zeros((3, 2)), np.zeros((3, 2)), r"y_true: expected a 1-D array"),
])
def test_regression_bad_inputs_raise_user_error(y_true, y_pred, match):
  with pytest.raises(UserError, match=match):
    M.regression_metrics(y_true, y_pred)


def test_regression_accepts_column_vectors():
  y = np.arange(10.0)[:, None]
  assert M.regression_metrics(y, y + 1, bootstrap=0)["mae"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------ binary / EF


def test_binary_metrics_hand_computed_and_sklearn():
  y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
  p = np.array([0.9, 0.6, 0.3, 0.7, 0.2, 0.1, 0.4, 0.8])
  r = M.binary_metrics(y, p)
  # predictions at 0.5: 1 1 0 1 0 0 0 1 -> tp=3 fn=1 fp=1 tn=3
  assert (r["tp"], r["fn"], r["fp"], r["tn"]) == (3, 1, 1, 3)
  assert r["accuracy"] == pytest.approx(6 / 8)
  assert r["precision"] == pytest.approx(3 / 4)
  assert r["recall"] == r["sensitivity"] == pytest.approx(3 / 4)
  assert r["specificity"] == pytest.approx(3 / 4)
  assert r["f1"] == pytest.approx(3 / 4)
  assert r["balanced_accuracy"] == pytest.approx(3 / 4)
  assert r["auroc"] == pytest.approx(skm.roc_auc_score(y, p))
  assert r["auprc"] == pytest.approx(skm.average_precision_score(y, p))
  assert r["notes"] == []
  rng = np.random.default_rng(3)
  y = rng.integers(0, 2, 400)
  p = np.clip(rng.random(400) * 0.7 + 0.3 * y, 0, 1)
  r = M.binary_metrics(y, p, threshold=0.4)
  pred = p >= 0.4
  assert r["precision"] == pytest.approx(skm.precision_score(y, pred))
  assert r["recall"] == pytest.approx(skm.recall_score(y, pred))
  assert r["f1"] == pytest.approx(skm.f1_score(y, pred))
  assert r["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
  assert r["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))


def test_binary_one_class_gives_nan_and_note():
  r = M.binary_metrics([0, 0, 0], [0.1, 0.7, 0.2])
  assert math.isnan(r["auroc"]) and math.isnan(r["auprc"]) and math.isnan(r["recall"])
  assert r["specificity"] == pytest.approx(2 / 3)
  assert any("no positive examples" in n for n in r["notes"])
  with pytest.raises(UserError, match="binary labels must be 0/1"):
    M.binary_metrics([0, 2], [0.1, 0.2])


def test_ranking_bootstrap_matches_sklearn_on_the_same_resamples():
  rng = np.random.default_rng(5)
  y = rng.integers(0, 2, 80).astype(bool)
  s = np.round(rng.random(80) + 0.4 * y, 1)  # ties
  boot = B._bootstrap_ranking(y, s, 15, seed=7)
  counts = B._resample_counts(np.random.default_rng(7), 80, 15)  # the same draws
  for i in range(15):
    idx = np.repeat(np.arange(80), counts[i])
    assert boot["auroc"][i] == pytest.approx(skm.roc_auc_score(y[idx], s[idx]), abs=1e-12)
    assert boot["auprc"][i] == pytest.approx(skm.average_precision_score(y[idx], s[idx]), abs=1e-12)


def test_binary_bootstrap_ci():
  rng = np.random.default_rng(6)
  y = rng.integers(0, 2, 300)
  s = rng.random(300) + 0.5 * y
  r = M.binary_metrics(y, s, bootstrap=500, seed=1)
  for k in ("auroc", "auprc"):
    assert r[f"{k}_ci_low"] < r[k] < r[f"{k}_ci_high"]
  assert "auroc_ci_low" not in M.binary_metrics(y, s)
  r = M.ef_threshold_metrics([55.0, 60.0, 30.0], [50.0, 58.0, 40.0], thresholds=(35, 20), bootstrap=50)
  assert r["ef_lt_35"]["auroc_ci_low"] <= r["ef_lt_35"]["auroc_ci_high"]
  assert math.isnan(r["ef_lt_20"]["auroc_ci_low"])  # one class: NaN, noted, no crash


def test_ef_threshold_convention_reduced_ef_is_positive():
  ef = np.array([25.0, 38.0, 42.0, 55.0, 60.0, 70.0])
  pred = np.array([30.0, 44.0, 39.0, 52.0, 49.0, 65.0])
  r = M.ef_threshold_metrics(ef, pred, thresholds=(40, 50))
  t40, t50 = r["ef_lt_40"], r["ef_lt_50"]
  # EF < 40: true positives are ef 25, 38; predicted positive are pred 30, 39 (ef 25, 42)
  assert (t40["n_pos"], t40["tp"], t40["fp"], t40["fn"], t40["tn"]) == (2, 1, 1, 1, 3)
  assert t40["sensitivity"] == pytest.approx(0.5) and t40["specificity"] == pytest.approx(0.75)
  assert t40["f1"] == pytest.approx(0.5)
  assert t40["auroc"] == pytest.approx(skm.roc_auc_score(ef < 40, -pred))
  assert t40["auprc"] == pytest.approx(skm.average_precision_score(ef < 40, -pred))
  # EF < 50: positives ef 25, 38, 42; predicted 30, 44, 39, 49 -> tp 3, fp 1
  assert (t50["n_pos"], t50["tp"], t50["fp"]) == (3, 3, 1)
  assert t50["accuracy"] == pytest.approx(5 / 6)
  assert t50["threshold"] == 50.0


def test_ef_threshold_from_probability_score():
  ef = np.array([30.0, 45.0, 60.0, 65.0])
  p_reduced = np.array([0.9, 0.4, 0.6, 0.1])
  r = M.ef_threshold_metrics(ef, p_reduced, thresholds=(50,), score_is_ef=False)["ef_lt_50"]
  assert (r["tp"], r["fn"], r["fp"], r["tn"]) == (1, 1, 1, 1)
  assert r["auroc"] == pytest.approx(skm.roc_auc_score(ef < 50, p_reduced))


def test_ef_threshold_one_class_split_is_nan_with_note_not_crash():
  ef = np.array([55.0, 60.0, 65.0, 70.0])  # no reduced EF at all
  r = M.ef_threshold_metrics(ef, ef + 1)
  for key in ("ef_lt_35", "ef_lt_40", "ef_lt_45", "ef_lt_50"):
    assert math.isnan(r[key]["auroc"]) and math.isnan(r[key]["auprc"]) and math.isnan(r[key]["sensitivity"])
    assert r[key]["specificity"] == 1.0 and r[key]["n_pos"] == 0 and r[key]["accuracy"] == 1.0
  assert len(r["notes"]) >= 4 and "EF < 35: no positive examples" in r["notes"][0]
  json.dumps(M.json_safe(r), allow_nan=False)


# ------------------------------------------------------------------------------------------------ multi-class


def test_classification_known_confusion_matrix():
  labels = np.array([0, 0, 0, 1, 1, 2])
  pred = np.array([0, 0, 1, 1, 2, 2])
  probs = np.full((6, 3), 0.1)
  probs[np.arange(6), pred] = 0.8
  r = M.classification_metrics(labels, probs, ["A2C", "A4C", "PLAX"])
  assert r["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
  assert r["accuracy"] == pytest.approx(4 / 6) and r["micro_f1"] == pytest.approx(4 / 6)
  a2c, a4c, plax = (r["per_class"][k] for k in ("A2C", "A4C", "PLAX"))
  assert (a2c["precision"], a2c["recall"], a2c["support"]) == (1.0, pytest.approx(2 / 3), 3)
  assert a2c["f1"] == pytest.approx(0.8) and a2c["specificity"] == 1.0
  assert (a4c["precision"], a4c["recall"], a4c["f1"]) == (0.5, 0.5, 0.5)
  assert a4c["specificity"] == pytest.approx(3 / 4)
  assert (plax["precision"], plax["recall"]) == (0.5, 1.0) and plax["f1"] == pytest.approx(2 / 3)
  assert r["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
  assert r["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 2 / 3) / 6)
  assert r["log_loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(6), labels])))
  # each row's two 0.1 entries tie and scikit-learn ranks the higher class index first, so only example 2 (label
  # 0, predicted 1; top 2 = classes 1 and 2) misses
  assert r["top2_accuracy"] == pytest.approx(5 / 6) == skm.top_k_accuracy_score(labels, probs, k=2)
  assert r["notes"] == []
  json.dumps(r)


def test_classification_matches_sklearn():
  rng = np.random.default_rng(4)
  labels, probs = _random_probs(rng, 400, 5)
  names = ["A2C", "A3C", "A4C", "PLAX", "PSAX"]
  r = M.classification_metrics(labels, probs, names)
  pred = probs.argmax(1)
  assert r["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred))
  assert r["micro_f1"] == pytest.approx(skm.f1_score(labels, pred, average="micro"))
  assert r["macro_f1"] == pytest.approx(skm.f1_score(labels, pred, average="macro"))
  assert r["weighted_f1"] == pytest.approx(skm.f1_score(labels, pred, average="weighted"))
  assert r["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, pred))
  assert r["auroc_macro_ovr"] == pytest.approx(skm.roc_auc_score(labels, probs, multi_class="ovr"))
  assert r["auprc_macro_ovr"] == pytest.approx(skm.average_precision_score(np.eye(5)[labels], probs))
  assert r["log_loss"] == pytest.approx(skm.log_loss(labels, probs))
  assert r["top2_accuracy"] == pytest.approx(skm.top_k_accuracy_score(labels, probs, k=2))
  assert r["confusion_matrix"] == skm.confusion_matrix(labels, pred).tolist()
  prec, rec, f1, sup = skm.precision_recall_fscore_support(labels, pred)
  for i, n in enumerate(names):
    pc = r["per_class"][n]
    assert (pc["precision"], pc["recall"], pc["f1"], pc["support"]) == pytest.approx((prec[i], rec[i], f1[i], sup[i]))


def test_classification_missing_class_is_nan_with_note():
  labels = np.array([0, 0, 1, 1])
  probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1]])
  r = M.classification_metrics(labels, probs, ["a", "b", "c"])
  assert math.isnan(r["per_class"]["c"]["auroc"]) and math.isnan(r["per_class"]["c"]["f1"])
  assert r["per_class"]["c"]["support"] == 0
  assert r["auroc_macro_ovr"] == 1.0 and r["macro_f1"] == 1.0  # over the classes that are defined
  assert any("'c'" in n for n in r["notes"])
  # a single-class split: every OvR AUROC is undefined -> NaN, not an exception
  r = M.classification_metrics([1, 1], [[0.2, 0.8], [0.6, 0.4]], ["x", "y"])
  assert math.isnan(r["auroc_macro_ovr"]) and r["accuracy"] == 0.5


def test_classification_accepts_probabilities_off_by_rounding():
  """Rows that sum to 1 only within float32 rounding (or hold 1 + a rounding error) are probabilities: metrics
  come back, equal to scikit-learn's where it accepts the input, and no warning reaches the caller."""
  import warnings

  rng = np.random.default_rng(8)
  labels, probs = _random_probs(rng, 200, 4)
  p32 = probs.astype(np.float32)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    r = M.classification_metrics(labels, p32)
    over = M.classification_metrics([0, 1, 2], [[1.0 + 2e-4, 0.0, 0.0], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # scikit-learn warns that these rows do not sum to one
    want = skm.log_loss(labels, p32.astype(np.float64))
  assert r["log_loss"] == pytest.approx(want, rel=1e-12)
  assert over["log_loss"] == pytest.approx(-(np.log(1 - 2.220446049250313e-16) + np.log(0.5) + np.log(0.8)) / 3)
  assert over["accuracy"] == 1.0


def test_classification_bad_inputs():
  probs = np.array([[0.5, 0.5], [0.9, 0.1]])
  with pytest.raises(UserError, match="class_names has 3 names"):
    M.classification_metrics([0, 1], probs, ["a", "b", "c"])
  with pytest.raises(UserError, match="look like logits"):
    M.classification_metrics([0, 1], np.array([[2.0, -1.0], [0.3, 0.1]]), ["a", "b"])
  with pytest.raises(UserError, match=r"labels: must be integers in \[0, 2\)"):
    M.classification_metrics([0, 2], probs, ["a", "b"])


# ------------------------------------------------------------------------------------------------ folds / JSON


def test_summarize_folds_and_format():
  folds = [
      {"mae": 4.0, "ef_lt_50": {"auroc": 0.90}, "notes": ["x"], "confusion_matrix": [[1]]},
      {"mae": 5.0, "ef_lt_50": {"auroc": float("nan")}, "notes": []},
      {"mae": 6.0, "ef_lt_50": {"auroc": 0.80}, "notes": []},
  ]
  s = M.summarize_folds(folds)
  assert set(s) == {"mae", "ef_lt_50/auroc"}
  assert s["mae"]["mean"] == pytest.approx(5.0) and s["mae"]["std"] == pytest.approx(1.0)  # sample std
  assert s["mae"]["values"] == [4.0, 5.0, 6.0] and s["mae"]["n_valid"] == 3
  auc = s["ef_lt_50/auroc"]
  assert auc["mean"] == pytest.approx(0.85) and auc["n_valid"] == 2 and math.isnan(auc["values"][1])
  assert M.format_mean_std(0.8123, 0.0342) == "0.812 +- 0.034"
  assert M.format_mean_std(s["mae"], digits=2) == "5.00 +- 1.00"
  assert M.format_summary(s)["mae"] == "5.000 +- 1.000"
  one = M.summarize_folds([{"acc": 0.7}])
  assert math.isnan(one["acc"]["std"]) and M.format_mean_std(one["acc"]) == "0.700"
  with pytest.raises(UserError):
    M.summarize_folds([])


def test_json_safe_turns_nan_into_null():
  d = {"a": float("nan"), "b": np.float32(1.5), "c": [np.int64(2), float("inf")], "d": np.array([1, 2])}
  assert json.loads(json.dumps(M.json_safe(d), allow_nan=False)) == {"a": None, "b": 1.5, "c": [2, None],
                                                                     "d": [1, 2]}


def test_importing_metrics_stays_light():
  import subprocess
  import sys

  code = "import sys, echojax.metrics; print(any(m in sys.modules for m in ('matplotlib', 'sklearn', 'jax')))"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "False"


def test_classification_bootstrap_cis_equal_sklearn_on_the_same_resamples():
  """The vectorised bootstrap gives, per resample, scikit-learn's accuracy, macro-F1 and balanced accuracy (same
  resample indices, also across chunk boundaries), and the intervals are those values' percentiles around the point
  estimate."""
  import warnings

  from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, precision_score, recall_score

  rng = np.random.default_rng(3)
  n, c, num = 40, 5, 200
  y = rng.integers(0, c - 1, n)
  y[0] = c - 1  # a rare class: many resamples lack it (predicted or not), which tests the macro conventions
  logits = rng.normal(size=(n, c)) + 2.0 * np.eye(c)[y] * (rng.random(n) < 0.6)[:, None]
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  m = M.classification_metrics(y, probs, bootstrap=num, seed=11)
  pred = probs.argmax(1)
  idx = np.random.default_rng(11).integers(0, n, size=(num, n))  # one chunk: the same draws as the metrics
  want = {"accuracy": [], "macro_f1": [], "balanced_accuracy": [], "macro_precision": [], "macro_recall": [],
          "macro_specificity": [], "class_precision": [], "class_recall": [], "class_f1": []}
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # resamples where a predicted class has no true example
    for i in idx:
      want["macro_precision"].append(precision_score(y[i], pred[i], average="macro", zero_division=0))
      want["macro_recall"].append(recall_score(y[i], pred[i], average="macro", zero_division=0))
      # specificity: no scikit-learn function; the point estimate on the resample is the reference
      point = M.classification_metrics(y[i], probs[i])
      want["macro_specificity"].append(point["macro_specificity"])
      for key in ("precision", "recall", "f1"):  # per class, the point estimate on the resample (NaN conventions)
        want[f"class_{key}"].append([point["per_class"][str(k)][key] for k in range(c)])
      want["accuracy"].append(accuracy_score(y[i], pred[i]))
      want["macro_f1"].append(f1_score(y[i], pred[i], average="macro", zero_division=0))
      want["balanced_accuracy"].append(balanced_accuracy_score(y[i], pred[i]))
  from unittest import mock

  with mock.patch.object(B, "_BOOTSTRAP_CHUNK_ELEMENTS", n * c * 64):  # 64 resamples per chunk: 4 chunks
    boot = B._bootstrap_classification(y, pred, c, num, seed=11)
  for name, vals in want.items():
    np.testing.assert_allclose(boot[name], vals, rtol=1e-12, atol=1e-12)  # per resample
    if name.startswith("class_"):  # per-class intervals: inside per_class, from the finite resamples
      key = name[len("class_"):]
      for k in range(c):
        v = np.asarray(vals)[:, k]
        low, high = np.quantile(v[np.isfinite(v)], [0.025, 0.975])
        pc = m["per_class"][str(k)]
        assert pc[f"{key}_ci_low"] == pytest.approx(low) and pc[f"{key}_ci_high"] == pytest.approx(high)
      continue
    low, high = np.quantile(vals, [0.025, 0.975])
    assert m[f"{name}_ci_low"] == pytest.approx(low) and m[f"{name}_ci_high"] == pytest.approx(high)
    assert m[f"{name}_ci_low"] <= m[name] <= m[f"{name}_ci_high"]
  assert (m["micro_f1_ci_low"], m["micro_f1_ci_high"]) == (m["accuracy_ci_low"], m["accuracy_ci_high"])
  assert "accuracy_ci_low" not in M.classification_metrics(y, probs)  # bootstrap=0: no intervals
  with pytest.raises(UserError, match="bootstrap=-1"):
    M.classification_metrics(y, probs, bootstrap=-1)
