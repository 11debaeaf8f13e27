"""Forward contract: shapes, raw layout and decode on hand-made inputs, init, official op order."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

import model_reference as ref
from official_listing import fake_official_state_dict, parse_listing
from yolox_ray.config import ConfigError, model_preset
from yolox_ray.models import build_model
from yolox_ray.models.blocks import Focus


def _cells(h, w):
    return sum((h // s) * (w // s) for s in (8, 16, 32))


# ---------------------------------------------------------------------------------------------
# Shapes


@pytest.mark.parametrize("name,n_anchors", [("yolox_nano", 1), ("yolox_s", 1), ("yolov3_coupled", 3),
                                            ("yolov3_decoupled_anchor", 3)])
def test_output_shapes_train_and_eval(name, n_anchors):
    torch.manual_seed(0)
    model = build_model(name, num_classes=3)
    assert (model.num_classes, model.n_anchors) == (3, n_anchors)
    x = torch.rand(2, 3, 64, 96) * 255
    a = _cells(64, 96) * n_anchors  # (8·12 + 4·6 + 2·3) cells × anchors
    raw = model.train()(x)
    assert raw.shape == (2, a, 8)
    grid = model.anchor_grid((64, 96), "cpu")
    assert grid.num == a and grid.n_anchors == n_anchors
    assert grid.sizes == ((8, 12), (4, 6), (2, 3))
    with torch.no_grad():
        out = model.eval()(x)
    assert out.shape == (2, a, 8)
    assert torch.all((out[..., 4:] >= 0) & (out[..., 4:] <= 1))
    assert torch.all(out[..., 2:4] > 0)


def test_anchor_grid_is_cached_per_size_and_device():
    model = build_model("yolox_nano")
    g1 = model.anchor_grid((64, 64), "cpu")
    assert model.anchor_grid(torch.Size([64, 64]), torch.device("cpu")) is g1
    g2 = model.anchor_grid((96, 64), "cpu")
    assert g2 is not g1 and g2.num == _cells(96, 64)


def test_bad_input_is_rejected_clearly():
    model = build_model("yolox_nano")
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.zeros(1, 3, 64, 80))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ConfigError, match="strides"):
        build_model(replace(model_preset("yolox_nano"), strides=(4, 8, 16)))
    with pytest.raises(TypeError, match="ModelConfig or a preset name"):
        build_model(42)


# ---------------------------------------------------------------------------------------------
# Decode on hand-made predictions: zero the prediction weights, choose the biases.


def _zero_weights(convs):
    with torch.no_grad():
        for conv in convs:
            conv.weight.zero_()


def test_decoupled_anchor_free_decode_by_hand():
    model = build_model("yolox_nano", num_classes=2)
    head = model.head
    _zero_weights([*head.reg_preds, *head.obj_preds, *head.cls_preds])
    with torch.no_grad():
        for conv in head.reg_preds:
            conv.bias.copy_(torch.tensor([0.5, -0.25, math.log(2.0), 0.0]))
        for conv in head.obj_preds:
            conv.bias.fill_(0.0)
        for conv in head.cls_preds:
            conv.bias.copy_(torch.tensor([math.log(3.0), -math.log(3.0)]))
    x = torch.rand(1, 3, 64, 96) * 255
    raw = model.train()(x)
    assert torch.allclose(raw[0, :], torch.tensor([0.5, -0.25, math.log(2.0), 0.0, 0.0, math.log(3.0), -math.log(3.0)]))
    with torch.no_grad():
        out = model.eval()(x)[0]
    # (cx, cy, w, h, obj, cls0, cls1) = ((0.5 + gx)·s, (gy − 0.25)·s, 2s, s, 0.5, 0.75, 0.25)
    expected = {
        0: (4.0, -2.0, 16.0, 8.0),        # level 0 (stride 8), cell (x 0, y 0)
        1 * 12 + 2: (20.0, 6.0, 16.0, 8.0),  # level 0, cell (x 2, y 1); level-0 width 12
        96: (8.0, -4.0, 32.0, 16.0),      # level 1 (stride 16) starts after 8·12 rows
        96 + 24 + 5: (2.5 * 32, 0.75 * 32, 64.0, 32.0),  # level 2, cell (x 2, y 1); width 3
    }
    for row, box in expected.items():
        assert torch.allclose(out[row], torch.tensor([*box, 0.5, 0.75, 0.25]), atol=1e-5), row


# YOLOv3 anchors per level (w, h), written out by hand.
LEVEL_ANCHORS = [((10, 13), (16, 30), (33, 23)), ((30, 61), (62, 45), (59, 119)), ((116, 90), (156, 198), (373, 326))]


def _check_anchor_rows(out, raw):
    # Chosen per anchor a: tx = 0.1·a, ty = 0, tw = log(a + 1), th = 0, obj logit = a, cls logits (−a, a).
    w0, w1 = 8, 4  # level widths at a 64×64 input
    for level, (stride, width, first) in enumerate([(8, w0, 0), (16, w1, 3 * 64), (32, 2, 3 * (64 + 16))]):
        for (gy, gx) in [(0, 0), (1, 1), (1, 0)]:
            for a in range(3):
                row = first + (gy * width + gx) * 3 + a
                aw, ah = LEVEL_ANCHORS[level][a]
                sig = 1 / (1 + math.exp(-a))
                want = [(0.1 * a + gx) * stride, gy * stride, (a + 1) * aw, ah, sig, 1 - sig, sig]
                assert torch.allclose(out[row], torch.tensor(want, dtype=torch.float32), atol=1e-4), (level, gy, gx, a)
                assert torch.allclose(raw[row], torch.tensor([0.1 * a, 0.0, math.log(a + 1), 0.0, a, -a, a],
                                                             dtype=torch.float32), atol=1e-6)


def test_decoupled_anchor_based_layout_and_decode_by_hand():
    model = build_model("yolov3_decoupled_anchor", num_classes=2)
    head = model.head
    _zero_weights([*head.reg_preds, *head.obj_preds, *head.cls_preds])
    with torch.no_grad():
        for k in range(3):
            # Anchor-major channels: reg a·4 + j, obj a, cls a·C + c.
            head.reg_preds[k].bias.copy_(torch.tensor([v for a in range(3) for v in (0.1 * a, 0, math.log(a + 1), 0)]))
            head.obj_preds[k].bias.copy_(torch.tensor([0.0, 1.0, 2.0]))
            head.cls_preds[k].bias.copy_(torch.tensor([v for a in range(3) for v in (-a, a)], dtype=torch.float32))
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        raw = model.train()(x)[0]
        out = model.eval()(x)[0]
    assert out.shape == (3 * 84, 7)
    _check_anchor_rows(out, raw)


def test_coupled_head_layout_and_decode_by_hand():
    model = build_model("yolov3_coupled", num_classes=2)
    _zero_weights(model.head.preds)
    with torch.no_grad():
        for conv in model.head.preds:
            # Per anchor a: [tx, ty, tw, th, obj, cls0, cls1] at channels a·7 .. a·7 + 6.
            conv.bias.copy_(torch.tensor([v for a in range(3) for v in (0.1 * a, 0, math.log(a + 1), 0, a, -a, a)],
                                         dtype=torch.float32))
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        raw = model.train()(x)[0]
        out = model.eval()(x)[0]
    _check_anchor_rows(out, raw)


def test_coupled_head_structure():
    # 3×3 BaseConv c→2c then 1×1 conv 2c→3·(5+C) with bias, c = 128/256/512 on Darknet53.
    head = build_model("yolov3_coupled", num_classes=80).head
    for k, c in enumerate((128, 256, 512)):
        assert head.convs[k].conv.weight.shape == (2 * c, c, 3, 3)
        assert head.preds[k].weight.shape == (255, 2 * c, 1, 1) and head.preds[k].bias.shape == (255,)


# ---------------------------------------------------------------------------------------------
# Initialisation


PRIOR = -4.59512  # −ln((1 − 0.01) / 0.01) = −ln 99


def test_prior_bias_and_batchnorm_settings():
    model = build_model("yolox_s")
    for conv in (*model.head.cls_preds, *model.head.obj_preds):
        assert torch.allclose(conv.bias, torch.full_like(conv.bias, PRIOR), atol=1e-5)
    for conv in model.head.reg_preds:  # default init, far from the prior logit
        assert conv.bias.abs().max() < 1.0
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == sum(k.endswith("running_mean") for k in parse_listing("yolox_s")[0])
    assert all(m.eps == 1e-3 and m.momentum == 0.03 for m in bns)

    coupled = build_model("yolov3_coupled", num_classes=80)
    for conv in coupled.head.preds:
        per_anchor = conv.bias.view(3, 85)
        assert torch.allclose(per_anchor[:, 4:], torch.full((3, 81), PRIOR), atol=1e-5)
        assert per_anchor[:, :4].abs().max() < 1.0

    custom = build_model(replace(model_preset("yolox_nano"), bn_eps=1e-5, bn_momentum=0.1, prior_prob=0.5))
    assert all(m.eps == 1e-5 and m.momentum == 0.1 for m in custom.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.allclose(custom.head.obj_preds[0].bias, torch.zeros(1))


def test_activations_per_family():
    nano = build_model("yolox_nano")
    dark = build_model("yolox_darknet53")
    assert any(isinstance(m, nn.SiLU) for m in nano.modules())
    assert not any(isinstance(m, nn.LeakyReLU) for m in nano.modules())
    lrelus = [m for m in dark.modules() if isinstance(m, nn.LeakyReLU)]
    assert lrelus and all(m.negative_slope == 0.1 for m in lrelus)
    assert not any(isinstance(m, nn.SiLU) for m in dark.modules())


def test_focus_phase_order_by_hand():
    focus = Focus(1, 4)
    focus.conv = nn.Identity()
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = focus(x)[0]
    assert out.tolist() == [
        [[0, 2], [8, 10]],   # even rows, even cols
        [[4, 6], [12, 14]],  # odd rows, even cols
        [[1, 3], [9, 11]],   # even rows, odd cols
        [[5, 7], [13, 15]],  # odd rows, odd cols
    ]


# ---------------------------------------------------------------------------------------------
# Op order equals the official code: same weights, independent functional forward (model_reference.py).


@pytest.mark.parametrize("name,size", [("yolox_nano", (64, 96)), ("yolox_tiny", (64, 96)),
                                       ("yolox_darknet53", (64, 64))])
def test_eval_output_equals_official_op_order(name, size):
    cfg = model_preset(name)
    sd = fake_official_state_dict(name, seed=1)
    model = build_model(name)
    model.load_state_dict(sd)
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(2)) * 255
    with torch.no_grad():
        ours = model.eval()(x)
        if cfg.backbone == "darknet53":
            feats = ref.darknet53_fpn(sd, x)
        else:
            feats = ref.cspdarknet_pafpn(sd, x, cfg.depth, cfg.depthwise)
        want = ref.decoupled_head_eval(sd, feats, cfg.depthwise, cfg.act)
    assert ours.shape == want.shape
    torch.testing.assert_close(ours, want, rtol=1e-5, atol=1e-5)
    if cfg.backbone == "cspdarknet":
        # The comparison is sensitive: swapping two Focus phases (as a wrong phase order would) changes it.
        swapped = dict(sd)
        w = sd["backbone.backbone.stem.conv.conv.weight"]
        swapped["backbone.backbone.stem.conv.conv.weight"] = w[:, [3, 4, 5, 0, 1, 2, 6, 7, 8, 9, 10, 11]]
        with torch.no_grad():
            other = ref.decoupled_head_eval(swapped, ref.cspdarknet_pafpn(swapped, x, cfg.depth, cfg.depthwise),
                                            cfg.depthwise, cfg.act)
        assert not torch.allclose(other, want, rtol=1e-3, atol=1e-3)
