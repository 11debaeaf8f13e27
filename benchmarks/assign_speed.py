"""Batched SimOTA (yolox_ray.assign.simota) vs a straightforward per-image, per-GT loop of the
reference algorithm (yolox.md §4.3, written below), on the same random inputs.

B = 8 images at 640 px (8400 anchors), 80 classes, 10 and 50 GTs per image, both geometries.
Prints median seconds of each, the speed ratio (loop / batched), the peak resident-memory growth of
each above the memory held before the call (measured in a fresh process from Linux's VmHWM after
resetting it, falling back to resource.getrusage; torch's CPU allocations are invisible to
tracemalloc) and whether the two assignments are identical. For reference it also times the batched
OTA assigner (Sinkhorn, `ota_iters` iterations) on the same inputs.

    python benchmarks/assign_speed.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

BATCH, SIDE, CLASSES = 8, 640, 80


def make_inputs(num_gt: int, seed: int):
    """Detector-like random inputs: GT sizes log-uniform 8..400 px, predictions scattered around anchors."""
    from yolox_ray.boxes import decode_boxes, make_anchor_grid

    gen = torch.Generator().manual_seed(seed)
    grid = make_anchor_grid([(SIDE // s, SIDE // s) for s in (8, 16, 32)], (8, 16, 32))
    wh = torch.exp(torch.empty(BATCH, num_gt, 2).uniform_(np.log(8), np.log(400), generator=gen))
    cxy = torch.rand(BATCH, num_gt, 2, generator=gen) * SIDE
    gt_boxes = torch.cat([cxy, wh], dim=-1)
    gt_classes = torch.randint(0, CLASSES, (BATCH, num_gt), generator=gen)
    gt_valid = torch.ones(BATCH, num_gt, dtype=torch.bool)
    reg = torch.randn(BATCH, grid.num, 4, generator=gen) * 0.7
    pred_boxes = decode_boxes(reg, grid)
    obj = torch.randn(BATCH, grid.num, generator=gen) * 2 - 3
    cls = torch.randn(BATCH, grid.num, CLASSES, generator=gen) * 2 - 3
    return pred_boxes, obj, cls, gt_boxes, gt_classes, gt_valid, grid


def loop_simota(pred_boxes, obj, cls, gt_boxes, gt_classes, gt_valid, grid, cfg):
    """The reference algorithm, one image and one GT at a time (official structure, same tie rules)."""
    batch, anchors, num_classes = cls.shape
    fg = torch.zeros(batch, anchors, dtype=torch.bool)
    matched_gt = torch.full((batch, anchors), -1, dtype=torch.long)
    x_c = (grid.grid_xy[:, 0] + 0.5) * grid.strides
    y_c = (grid.grid_xy[:, 1] + 0.5) * grid.strides
    penalty = 1e6 if cfg.geometry == "center" else 1e5
    for b in range(batch):
        rows = torch.nonzero(gt_valid[b]).flatten()
        if rows.numel() == 0:
            continue
        gt = gt_boxes[b, rows]
        dist = grid.strides[None, :] * cfg.center_radius
        in_center = torch.stack([x_c - (gt[:, 0:1] - dist), y_c - (gt[:, 1:2] - dist),
                                 (gt[:, 0:1] + dist) - x_c, (gt[:, 1:2] + dist) - y_c], 2).min(-1).values > 0
        if cfg.geometry == "center":
            candidate = in_center.any(0)
            relation = in_center[:, candidate]
        else:
            hw, hh = 0.5 * gt[:, 2:3], 0.5 * gt[:, 3:4]
            in_box = torch.stack([x_c - (gt[:, 0:1] - hw), y_c - (gt[:, 1:2] - hh),
                                  (gt[:, 0:1] + hw) - x_c, (gt[:, 1:2] + hh) - y_c], 2).min(-1).values > 0
            candidate = in_box.any(0) | in_center.any(0)
            relation = in_box[:, candidate] & in_center[:, candidate]
        n_gt, n_cand = len(rows), int(candidate.sum())
        if n_cand == 0:
            continue
        boxes = pred_boxes[b][candidate]
        tl = torch.max(gt[:, None, :2] - gt[:, None, 2:] / 2, boxes[:, :2] - boxes[:, 2:] / 2)
        br = torch.min(gt[:, None, :2] + gt[:, None, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2)
        inter = torch.prod(br - tl, 2) * (tl < br).float().prod(2)
        iou = inter / (torch.prod(gt[:, 2:], 1)[:, None] + torch.prod(boxes[:, 2:], 1) - inter)
        probs = (cls[b][candidate].sigmoid()[None].repeat(n_gt, 1, 1)
                 * obj[b][candidate].sigmoid()[None, :, None].repeat(n_gt, 1, 1)).sqrt()
        onehot = F.one_hot(gt_classes[b, rows], num_classes).float()[:, None, :].repeat(1, n_cand, 1)
        cls_cost = F.binary_cross_entropy(probs, onehot, reduction="none").sum(-1)
        cost = (cfg.cls_cost_weight * cls_cost + cfg.iou_cost_weight * -torch.log(iou + 1e-8)
                + penalty * (~relation).float())
        matching = torch.zeros(n_gt, n_cand, dtype=torch.long)
        top = torch.topk(iou, min(cfg.candidate_k, n_cand), dim=1).values
        for g in range(n_gt):
            total = torch.zeros((), dtype=torch.float32)
            for value in top[g]:
                total = total + value
            k = max(1, int(total))
            chosen = torch.sort(cost[g], stable=True).indices[:k]
            matching[g, chosen] = 1
        multi = matching.sum(0) > 1
        if bool(multi.any()):
            winner = torch.min(cost[:, multi], dim=0).indices
            matching[:, multi] = 0
            matching[winner, multi] = 1
        positive = matching.sum(0) > 0
        cand_idx = torch.nonzero(candidate).flatten()
        fg[b, cand_idx[positive]] = True
        matched_gt[b, cand_idx[positive]] = rows[matching[:, positive].argmax(0)]
    return fg, matched_gt


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> int:
    """Reset the peak-RSS mark (Linux) and return the KiB the next peak is measured from."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        current = _rss_kib("VmRSS")
        if current is not None:
            return current
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_kib() -> int:
    peak = _rss_kib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _measure(which: str, num_gt: int, geometry: str, repeats: int, threads: int, seed: int):
    """Runs in a fresh process: median time, peak RSS growth (MiB) and the assignment."""
    torch.set_num_threads(threads)
    from yolox_ray.assign import ota, simota
    from yolox_ray.config import AssignConfig

    cfg = AssignConfig(assigner="ota" if which == "ota" else "simota", geometry=geometry,
                       center_radius=1.5 if geometry == "center" else 2.5)
    inputs = make_inputs(num_gt, seed)
    base = _reset_peak()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        if which in ("batched", "ota"):
            out = (simota if which == "batched" else ota)(*inputs, cfg=cfg)
            result = (out.fg_mask, out.matched_gt)
        else:
            result = loop_simota(*inputs, cfg=cfg)
        times.append(time.perf_counter() - start)
    peak = (_peak_kib() - base) / 1024
    return statistics.median(times), peak, result[0].numpy(), result[1].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each measurement")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    print(f"B={BATCH}, {SIDE}px (8400 anchors), C={CLASSES}, torch threads={args.threads}, median of {args.repeats}")
    print(f"{'geometry':>15} {'GTs':>4} {'loop s':>9} {'batched s':>10} {'speed-up':>9} "
          f"{'loop MiB':>9} {'batched MiB':>12} identical  | OTA s (OTA/batched SimOTA)")
    for geometry in ("center", "box_and_center"):
        for num_gt in (10, 50):
            results = {}
            for which in ("loop", "batched", "ota"):
                with ctx.Pool(1) as pool:
                    results[which] = pool.apply(_measure, (which, num_gt, geometry, args.repeats, args.threads, args.seed))
            (t_loop, m_loop, fg_l, gt_l), (t_bat, m_bat, fg_b, gt_b) = results["loop"], results["batched"]
            t_ota = results["ota"][0]
            same = bool(np.array_equal(fg_l, fg_b) and np.array_equal(gt_l, gt_b))
            print(f"{geometry:>15} {num_gt:>4} {t_loop:>9.4f} {t_bat:>10.4f} {t_loop / t_bat:>8.1f}x "
                  f"{m_loop:>9.1f} {m_bat:>12.1f} {str(same):>9} ({int(fg_b.sum())} fg) | "
                  f"{t_ota:.4f} ({t_ota / t_bat:.1f}x)")


if __name__ == "__main__":
    main()
