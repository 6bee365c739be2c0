"""Metric math on hand-built scores: ties, top-k, confusion counts, per-class accuracy and rankings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidnet.errors import UsageError
from vidnet.eval.metrics import (
    ClassScore,
    ConfusedPair,
    best_worst_classes,
    confusion_matrix,
    log_softmax,
    mean_class_accuracy,
    most_confused_pairs,
    per_class_accuracy,
    softmax,
    summarize,
    topk_accuracy,
    topk_indices,
)


@pytest.mark.parametrize(
    ("row", "k", "expected"),
    [
        ([0.1, 0.5, 0.2], 2, [1, 2]),
        ([1.0, 1.0, 1.0], 3, [0, 1, 2]),  # all tied: class order
        ([0.0, 2.0, 2.0, 1.0], 2, [1, 2]),  # tie for first: lower index first
        ([3.0, 2.0, 3.0, 2.0], 4, [0, 2, 1, 3]),
        ([0.2, 0.1], 5, [0, 1]),  # k capped at C
    ],
)
def test_topk_indices_ties_go_to_lower_index(row, k, expected):
    assert topk_indices(np.array([row]), k)[0].tolist() == expected


@pytest.mark.parametrize(
    ("scores", "labels", "ks", "expected"),
    [
        ([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.3, 0.3, 0.4]], [0, 1, 1], (1, 2), {1: 1 / 3, 2: 2 / 3}),
        # tie between classes 0 and 1 at the top: class 0 wins top-1, class 1 is still in top-2
        ([[0.5, 0.5, 0.0]], [1], (1, 2), {1: 0.0, 2: 1.0}),
        ([[0.5, 0.5, 0.0]], [0], (1,), {1: 1.0}),
        ([[1.0, 2.0, 3.0, 4.0]] * 2, [0, 3], (1, 3, 10), {1: 0.5, 3: 0.5, 10: 1.0}),
    ],
)
def test_topk_accuracy(scores, labels, ks, expected):
    assert topk_accuracy(np.array(scores), np.array(labels), ks) == pytest.approx(expected)


def test_confusion_and_per_class():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    preds = np.array([0, 1, 1, 1, 1, 0, 2, 2, 1])
    cm = confusion_matrix(labels, preds, 4)
    assert cm.tolist() == [[1, 2, 0, 0], [0, 2, 0, 0], [1, 1, 2, 0], [0, 0, 0, 0]]
    acc = per_class_accuracy(cm)
    assert acc[:3] == pytest.approx([1 / 3, 1.0, 0.5]) and math.isnan(acc[3])
    assert mean_class_accuracy(cm) == pytest.approx((1 / 3 + 1 + 0.5) / 3)  # class 3 has no samples


def test_rankings_are_totally_ordered():
    # class 0: 2/4, class 1: 1/2, class 2: 3/3, class 3: 0/1, class 4: 1/1
    cm = np.array([
        [2, 1, 1, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 3, 0, 0],
        [1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1],
    ])
    best, worst = best_worst_classes(cm, 3)
    assert best == [ClassScore(2, 1.0, 3), ClassScore(4, 1.0, 1), ClassScore(0, 0.5, 4)]
    assert worst == [ClassScore(3, 0.0, 1), ClassScore(0, 0.5, 4), ClassScore(1, 0.5, 2)]
    assert most_confused_pairs(cm, 3) == [ConfusedPair(0, 1, 1), ConfusedPair(0, 2, 1), ConfusedPair(1, 0, 1)]
    cm[3, 0] = 5
    assert most_confused_pairs(cm, 1) == [ConfusedPair(3, 0, 5)]
    assert most_confused_pairs(np.eye(3, dtype=int)) == []


def test_softmax_and_summary():
    logits = np.array([[1000.0, 0.0], [0.0, 0.0], [1.0, 3.0]])
    assert softmax(logits).sum(axis=1) == pytest.approx([1, 1, 1])
    assert np.exp(log_softmax(logits)) == pytest.approx(softmax(logits))
    s = summarize(log_softmax(logits), np.array([0, 1, 1]), ks=(1, 2), rank=2)
    assert s.n == 3 and s.topk == {1: pytest.approx(2 / 3), 2: 1.0}
    assert s.loss == pytest.approx((0 + math.log(2) + math.log(1 + math.exp(-2))) / 3)
    assert s.confusion.tolist() == [[1, 0], [1, 1]] and s.mean_class_accuracy == pytest.approx(0.75)
    assert s.confused == [ConfusedPair(1, 0, 1)]


@pytest.mark.parametrize(
    ("scores", "labels"),
    [(np.zeros(3), np.zeros(3, int)), (np.zeros((2, 3)), np.array([0, 3])), (np.zeros((2, 3)), np.array([0.0, 1.0]))],
)
def test_bad_input(scores, labels):
    with pytest.raises(UsageError):
        topk_accuracy(scores, labels)
