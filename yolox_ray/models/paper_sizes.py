"""The paper's published model sizes, shipped with the package so `yolox-ray info` can compare.

Source: Ge et al., "YOLOX: Exceeding YOLO Series in 2021" (arXiv 2107.08430), Table 2 (Darknet53
ablation rows) and the official model-zoo table (README), as collected in the project's
`reference/paper_tables.json`. All numbers are for 80 classes at the listed square input size.
"""

from __future__ import annotations

from typing import NamedTuple


class PaperSize(NamedTuple):
    params_m: float  # millions of parameters, as printed
    gflops: float  # as printed
    size: int  # input side the GFLOPs refer to


PAPER_SIZES: dict[str, PaperSize] = {
    "yolox_nano": PaperSize(0.91, 1.08, 416),
    "yolox_tiny": PaperSize(5.06, 6.45, 416),
    "yolox_s": PaperSize(9.0, 26.8, 640),
    "yolox_m": PaperSize(25.3, 73.8, 640),
    "yolox_l": PaperSize(54.2, 155.6, 640),
    "yolox_x": PaperSize(99.1, 281.9, 640),
    "yolox_darknet53": PaperSize(63.72, 185.3, 640),  # Table 2 "+anchor-free" … "+SimOTA"
    "yolov3_coupled": PaperSize(63.00, 157.3, 640),  # Table 2 "YOLOv3 baseline"
    "yolov3_decoupled_anchor": PaperSize(63.86, 186.0, 640),  # Table 2 "+decoupled head"
}
