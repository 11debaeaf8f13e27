"""Vectorised batched NMS equals textbook greedy NMS (hand-worked cases and a loop reference)."""

from __future__ import annotations

import torch

from yolox_ray.evaluation import batched_nms
from yolox_ray.evaluation import nms as nms_module


def greedy_reference(boxes, scores, groups, thr) -> list[int]:
    """Per group: take the best remaining box, drop every remaining box with IoU > thr; repeat."""
    keep = []
    for g in sorted(set(groups.tolist())):
        idx = [i for i in range(len(boxes)) if groups[i] == g]
        idx.sort(key=lambda i: -float(scores[i]))
        while idx:
            best = idx.pop(0)
            keep.append(best)
            rest = []
            for j in idx:
                a, b = boxes[best].tolist(), boxes[j].tolist()
                iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
                ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
                inter = iw * ih
                union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
                if not inter / union > thr:
                    rest.append(j)
            idx = rest
    return sorted(keep, key=lambda i: -float(scores[i]))


def test_hand_worked_class_aware():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [1, 0, 11, 10]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    groups = torch.tensor([0, 0, 0, 1])  # IoU(0, 1) = 90 / 110 = 0.82 > 0.65; box 3 is another class
    assert batched_nms(boxes, scores, groups, 0.65).tolist() == [0, 2, 3]


def test_suppressed_box_does_not_suppress():
    # IoU(A, B) = IoU(B, C) = 70/130 = 0.54 > 0.5, IoU(A, C) = 40/160 = 0.25: greedy keeps A and C.
    boxes = torch.tensor([[0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10]], dtype=torch.float32)
    assert batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.zeros(3, dtype=torch.long), 0.5).tolist() == [0, 2]


def test_empty_and_single():
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).numel() == 0
    assert batched_nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([0.5]), torch.tensor([3]), 0.5).tolist() == [0]


def test_matches_greedy_reference_on_random_clusters(monkeypatch):
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        n = 250
        centres = torch.rand(12, 2, generator=g) * 200
        c = centres[torch.randint(0, 12, (n,), generator=g)] + torch.randn(n, 2, generator=g) * 6
        wh = 10 + torch.rand(n, 2, generator=g) * 30
        boxes = torch.cat((c - wh / 2, c + wh / 2), dim=1)
        scores = torch.rand(n, generator=g)
        groups = torch.randint(0, 3, (n,), generator=g)
        thr = [0.3, 0.5, 0.65][seed % 3]
        if seed == 5:
            monkeypatch.setattr(nms_module, "_PAIR_CHUNK", 97)  # exercise the chunked pair enumeration
        assert batched_nms(boxes, scores, groups, thr).tolist() == greedy_reference(boxes, scores, groups, thr)
