"""Deterministic, label-stratified, group-disjoint splits (no study/patient in two splits)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Hashable, Sequence

import numpy as np


def group_stratified_split(labels: Sequence[Hashable], groups: Sequence[Hashable],
                           fractions: dict[str, float], seed: int = 0) -> list[str]:
  """Assign each item a split name so that every group lands in exactly one split and label proportions per
  split follow ``fractions`` as closely as whole groups allow.

  Groups are visited in a seeded order, largest first, and each goes to the split whose per-label counts are
  furthest below target (a greedy multi-label bin packing). Deterministic for (labels, groups, seed).
  """
  if len(labels) != len(groups):
    raise ValueError("labels and groups must have the same length")
  names = list(fractions)
  frac = np.array([fractions[n] for n in names], dtype=np.float64)
  frac = frac / frac.sum()
  label_ids = {l: i for i, l in enumerate(sorted(set(labels), key=str))}
  members: dict[Hashable, list[int]] = defaultdict(list)
  for i, g in enumerate(groups):
    members[g].append(i)
  group_counts = {}
  for g, idx in members.items():
    c = np.zeros(len(label_ids))
    for i in idx:
      c[label_ids[labels[i]]] += 1
    group_counts[g] = c
  total = sum(group_counts.values())
  target = frac[:, None] * total[None, :]  # (splits, labels)
  have = np.zeros_like(target)

  def key(g):  # seeded, order-independent tie break
    return hashlib.sha256(f"{seed}:{g}".encode()).hexdigest()

  order = sorted(members, key=lambda g: (-group_counts[g].sum(), key(g)))
  assign = {}
  for g in order:
    c = group_counts[g]
    # how far below target each split is on this group's labels, relative to the target
    deficit = (c[None, :] * (target - have) / np.maximum(target, 1e-9)).sum(1)
    s = int(np.argmax(deficit))
    assign[g] = names[s]
    have[s] += c
  return [assign[g] for g in groups]
