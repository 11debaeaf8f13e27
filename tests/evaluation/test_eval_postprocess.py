"""postprocess (§8): best class only, score obj·cls, conf filter, class-wise NMS, per image."""

from __future__ import annotations

import pytest
import torch

from yolox_ray.evaluation import legacy_normalize, postprocess


def test_hand_worked():
    out = torch.zeros(2, 3, 7)  # (cx, cy, w, h, obj, cls0, cls1)
    out[0, 0] = torch.tensor([10, 10, 4, 4, 0.9, 0.2, 0.8])  # score 0.72, class 1
    out[0, 1] = torch.tensor([10.5, 10, 4, 4, 0.8, 0.1, 0.7])  # IoU 3.5/4.5 = 0.78 with the first: suppressed
    out[0, 2] = torch.tensor([50, 50, 8, 8, 0.5, 0.01, 0.015])  # score 0.0075 < 0.01: filtered
    out[1, 0] = torch.tensor([30, 40, 10, 20, 0.6, 0.5, 0.1])  # class 0, score 0.3
    out[1, 1] = torch.tensor([30, 40, 10, 20, 0.5, 0.2, 0.8])  # same box, class 1, score 0.4: kept
    dets = postprocess(out, num_classes=2, conf_thresh=0.01, nms_thresh=0.65)
    assert len(dets) == 2
    torch.testing.assert_close(dets[0], torch.tensor([[8.0, 8, 12, 12, 0.9, 0.8, 1]]))
    torch.testing.assert_close(dets[1], torch.tensor([[25.0, 30, 35, 50, 0.5, 0.8, 1], [25, 30, 35, 50, 0.6, 0.5, 0]]))


def test_nothing_above_threshold_and_bad_shape():
    dets = postprocess(torch.zeros(3, 5, 9), num_classes=4)
    assert [d.shape for d in dets] == [(0, 7)] * 3
    with pytest.raises(ValueError, match=r"expected outputs \[B, A, 9\]"):
        postprocess(torch.zeros(1, 5, 8), num_classes=4)


def test_legacy_normalize():
    img = torch.zeros(1, 3, 1, 1)
    img[0, :, 0, 0] = torch.tensor([255.0, 0.0, 127.5])  # B, G, R
    out = legacy_normalize(img)[0, :, 0, 0]
    expected = torch.tensor([(0.5 - 0.485) / 0.229, (0 - 0.456) / 0.224, (1 - 0.406) / 0.225])  # R, G, B
    torch.testing.assert_close(out, expected)
