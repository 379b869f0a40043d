"""Minimal metrics used only until/unless ``echojax.metrics`` is importable (same function names and returns)."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def regression_metrics(y, yhat, bootstrap: int = 0, seed: int = 0) -> dict:
  y, yhat = np.asarray(y, np.float64), np.asarray(yhat, np.float64)
  err = yhat - y
  ss = np.sum((y - y.mean()) ** 2)
  return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
          "r2": float(1 - np.sum(err ** 2) / ss) if ss > 0 else float("nan"), "n": int(len(y))}


def binary_metrics(y, score, threshold: float = 0.5) -> dict:
  y, score = np.asarray(y).astype(int), np.asarray(score, np.float64)
  pred = (score >= threshold).astype(int)
  both = len(np.unique(y)) == 2
  return {"auroc": float(skm.roc_auc_score(y, score)) if both else float("nan"),
          "auprc": float(skm.average_precision_score(y, score)) if both else float("nan"),
          "accuracy": float(np.mean(pred == y)), "f1": float(skm.f1_score(y, pred, zero_division=0)),
          "n": int(len(y))}


def classification_metrics(labels, probs, class_names) -> dict:
  labels, probs = np.asarray(labels).astype(int), np.asarray(probs, np.float64)
  pred = probs.argmax(-1)
  return {"accuracy": float(np.mean(pred == labels)),
          "confusion_matrix": skm.confusion_matrix(labels, pred, labels=list(range(len(class_names)))).tolist(),
          "n": int(len(labels))}
