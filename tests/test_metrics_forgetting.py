"""Tests for fairens_core.metrics.forgetting."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fairens_core.metrics import cumulative_forgetting, forgetting_events, forgetting_events_per_epoch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

LABELS = torch.tensor([0, 1, 2, 0])
# predicted labels at 6 epochs; correctness per example (1 = right):
# ex 0: 1 0 1 0 1 1 -> 2 events (epochs 0->1, 2->3)
# ex 1: 0 1 1 1 1 1 -> 0 events (learned once, never forgotten)
# ex 2: 0 0 0 0 0 0 -> 0 events (never learned)
# ex 3: 1 1 1 1 1 0 -> 1 event (4->5)
PREDS = torch.tensor(
    [
        [0, 0, 0, 0],
        [1, 1, 0, 0],
        [0, 1, 1, 0],
        [2, 1, 0, 0],
        [0, 1, 1, 0],
        [0, 1, 1, 2],
    ]
)


@pytest.mark.parametrize("device", DEVICES)
def test_forgetting_events_constructed_sequence(device):
    events = forgetting_events(PREDS.to(device), LABELS.to(device))
    assert events.tolist() == [2, 0, 0, 1]
    assert events.device.type == device


def test_forgetting_from_scores():
    scores = torch.nn.functional.one_hot(PREDS, 3).float()  # (E, N, C)
    assert forgetting_events(scores, LABELS).tolist() == [2, 0, 0, 1]


def test_forgetting_per_epoch():
    # transitions 0->1: ex 0; 2->3: ex 0; 4->5: ex 3
    assert forgetting_events_per_epoch(PREDS, LABELS).tolist() == [1, 0, 1, 0, 1]


def test_cumulative_forgetting_window():
    assert cumulative_forgetting(PREDS, LABELS) == 3
    assert cumulative_forgetting(PREDS, LABELS, start=1) == 2  # transitions from epoch 1 on
    assert cumulative_forgetting(PREDS, LABELS, start=3) == 1
    assert cumulative_forgetting(PREDS, LABELS, start=0, stop=3) == 1  # epochs 0, 1, 2
    assert cumulative_forgetting(PREDS, LABELS, start=5) == 0  # a single epoch has no transition


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=1, max_size=8), min_size=1, max_size=10), st.integers(0, 9))
def test_forgetting_matches_loop(correct_rows, start):
    n = min(len(r) for r in correct_rows)
    correct = torch.tensor([r[:n] for r in correct_rows])  # (E, N)
    labels = torch.zeros(n, dtype=torch.long)
    preds = (~correct).long()  # predict 0 (right) or 1 (wrong)
    expected = [
        sum(1 for e in range(len(correct) - 1) if correct[e, i] and not correct[e + 1, i]) for i in range(n)
    ]
    assert forgetting_events(preds, labels).tolist() == expected
    assert int(forgetting_events_per_epoch(preds, labels).sum()) == sum(expected)
    expected_window = sum(
        1 for e in range(start, len(correct) - 1) for i in range(n) if correct[e, i] and not correct[e + 1, i]
    )
    assert cumulative_forgetting(preds, labels, start=start) == expected_window
