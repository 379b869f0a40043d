"""Host-side evaluation metrics for every echojax task (numpy in, plain JSON-able dicts out).

Called by ``echojax.evaluate`` and by each task's ``metrics`` on a whole split, after predictions have been
gathered to the host. Point estimates come from scikit-learn (imported inside the functions, so ``import
echojax.metrics`` stays cheap; no JAX, no matplotlib); this package adds the input checks, the NaN-with-a-note
convention and the bootstrap confidence intervals, which are vectorised numpy because a per-resample scikit-learn
loop is far slower (``benchmarks/metrics.py``; tests check they equal scikit-learn per resample).

Modules: ``ranking`` (AUROC, AUPRC, ROC/PR curves), ``regression``, ``binary`` (binary and EF cut-off metrics),
``classification`` (multi-class), ``paired`` (McNemar, paired bootstrap, Holm), ``bootstrap`` (resampling,
intervals), ``folds`` (cross-validation summaries,
JSON helpers), ``_checks`` (input validation).

Conventions
-----------
- Every function returns a plain ``dict`` of python floats / ints (nested dicts for per-class or per-threshold
  results) plus a ``"notes"`` list of strings saying why any value is NaN. A metric that is undefined on the given
  split (AUROC with one class, recall with no positives, R2 with constant targets, ...) is ``float("nan")`` with
  a note; it never raises. ``json.dump`` writes NaN as ``NaN``; use :func:`json_safe` for strict JSON (null).
- Wrong inputs (mismatched lengths, wrong shapes, NaN/inf values, probabilities that are really logits) raise
  :class:`echojax.errors.UserError` naming the argument and the fix.
- Reduced ejection fraction is the positive class: for a threshold ``t``, an echo is positive when ``EF < t``.
- Precision with no predicted positives is 0.0 (scikit-learn's ``zero_division=0``), with a note.
- AUPRC is average precision (the step-wise area, as scikit-learn's ``average_precision_score``), not the
  trapezoidal area, which is optimistic.
- Cross-validation: :func:`summarize_folds` + :func:`format_mean_std` give "0.812 +- 0.034" (sample std, ddof=1).
"""


from echojax.metrics._checks import _binary_labels, _same_length, _vector  # noqa: F401  (used by echojax.plots)
from echojax.metrics.binary import binary_metrics, ef_threshold_metrics
from echojax.metrics.classification import classification_metrics
from echojax.metrics.folds import flatten, format_mean_std, format_summary, json_safe, summarize_folds
from echojax.metrics.ranking import (auroc, average_precision, permutation_test_auroc, precision_recall_curve,
                                     roc_curve)
from echojax.metrics.regression import regression_metrics
from echojax.metrics.paired import holm, mcnemar_test, paired_bootstrap, pooled_accuracy
from echojax.metrics.uncertainty import interval_coverage, referral_curve

__all__ = [
    "auroc", "average_precision", "binary_metrics", "classification_metrics", "ef_threshold_metrics", "flatten",
    "format_mean_std", "format_summary", "json_safe", "permutation_test_auroc", "precision_recall_curve", "regression_metrics", "roc_curve",
    "summarize_folds", "interval_coverage", "referral_curve", "holm", "mcnemar_test", "paired_bootstrap",
    "pooled_accuracy",
]
