"""How a training process spends the CPUs it was given: data-loader processes vs torch threads.

The rule (`plan_cpus`), with n = the whole CPUs of the worker (at least 1) and `data.workers` an
upper bound on loader processes:

- CPU training, n <= 2: data in the training process (0 loader processes), n torch threads.
  On 2 cores a loader process preempts one of the two intra-op threads every step waits on; the
  augmentation of a batch costs a few percent of a CPU step (Mosaic+MixUp ~40 samples/s per
  process at 640 px vs ~10 s for a YOLOX-S step of 8), so doing it in-process is cheaper.
- CPU training, n > 2: at most 1 loader process (it keeps up with any CPU step, see above), the
  other n - 1 CPUs are torch threads.
- GPU training: the step runs on the device, the CPU side is data: min(data.workers, n - 1)
  loader processes and the rest (at least 1) torch threads.

So loader processes + torch threads = n, except that a 1-CPU GPU worker still gets 1 thread.
OpenCV, which runs the augmentation, gets the torch thread count when the data is in-process (its
default is every core of the machine, so two 1-CPU trials on 2 cores would oversubscribe them) and
no threads of its own in loader processes (`apply_cv2_threads`).
The order of batches and each sample's randomness do not depend on the number of loader processes
(data/loader.py), so the plan changes speed only, never results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CpuPlan:
    """What one training process uses: `cpus` whole CPUs = `data_workers` loader processes + `threads`."""

    cpus: int
    data_workers: int
    threads: int


def plan_cpus(cpus: float, data_workers: int, use_gpu: bool = False) -> CpuPlan:
    """The rule of the module docstring for a worker given `cpus` CPUs (Ray's `cpus_per_worker`)."""
    if not cpus > 0:
        raise ValueError(f"cpus must be > 0, got {cpus}")
    if data_workers < 0:
        raise ValueError(f"data_workers must be >= 0, got {data_workers}")
    n = max(1, math.floor(cpus + 1e-9))
    if use_gpu:
        loaders = min(data_workers, n - 1)
    elif n <= 2:
        loaders = 0
    else:
        loaders = min(data_workers, 1)
    return CpuPlan(cpus=n, data_workers=loaders, threads=max(1, n - loaders))


def apply_cv2_threads(plan: CpuPlan) -> None:
    """OpenCV's thread pool sized to the plan (see the module docstring); loader processes make it
    single-threaded themselves before they fork (data/loader.py)."""
    import cv2

    if plan.data_workers == 0:
        cv2.setNumThreads(plan.threads)


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 units (AVX-512 BF16 / AMX): without them bf16 autocast is slower
    than float32, so `train.amp` on such a CPU warns and the benchmarks skip their bf16 rows."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
