"""Where `yolox-ray train`'s epoch overhead over the bare engine comes from: the same bare engine
(`yolox_ray.engine.Trainer`, cpus=2 as a Ray worker gets them) run in or beside Ray in several ways.

    python benchmarks/ray_overhead.py MODE      # MODE: one of MODES below

main: this process's main thread (the bare engine); thread: a non-main thread, as Ray Train runs the
training loop; beside_ray / beside_ray_nodash: the main thread of a process that has started a local
2-CPU cluster with / without its dashboard (what Ray's idle daemons alone cost); ray_task /
ray_task_nodash: a plain Ray task on such a cluster (no Train, no MLflow); ray_thread: a Ray task that
runs it in a thread. Config: YOLOX-Nano, 320 synthetic 320-px images, batch 16, 20
iterations an epoch, 5 epochs, no evaluation, data in-process. Prints the median
`train_seconds_epoch` of epochs 2-5 and the CPU seconds of the busiest threads of the process that
trained (from /proc), so that running slower (more CPU for the same work) and waiting (less CPU)
can be told apart. Run the modes one after another on an idle machine and compare neighbours; the
first run builds the synthetic dataset cache (/tmp/yolox_ray_overhead_cache) and is slower.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolox_ray.config import apply_overrides, experiment_preset  # noqa: E402

CACHE = "/tmp/yolox_ray_overhead_cache"
MODES = ("main", "thread", "beside_ray", "beside_ray_nodash", "ray_task", "ray_task_nodash", "ray_thread")


def config():
    return apply_overrides(experiment_preset("yolox_nano"), {
        "model.num_classes": 8, "data.synthetic_train": 320, "data.synthetic_val": 8, "data.synthetic_size": 320,
        "data.cache_dir": CACHE, "data.input_size": (320, 320), "data.test_size": (320, 320),
        "data.multiscale_range": 0, "data.random_size": None, "data.workers": 0,
        "train.multiscale": False, "train.epochs": 5, "train.warmup_epochs": 1, "train.no_aug_epochs": 0,
        "train.batch_size": 16, "train.eval_interval": 10 ** 6, "train.print_interval": 10 ** 6, "train.max_iters": 20})


def thread_cpu(top: int = 4) -> list[tuple[float, str]]:
    """(CPU seconds, thread name) of this process's busiest threads."""
    tick = os.sysconf("SC_CLK_TCK")
    out = []
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out.append((round((int(fields[11]) + int(fields[12])) / tick, 2), stat[stat.index("(") + 1:stat.rindex(")")]))
    return sorted(out, reverse=True)[:top]


def train() -> tuple[list[float], list[tuple[float, str]]]:
    from yolox_ray.engine import Trainer

    seconds: list[float] = []

    class Collect:
        def on_epoch_end(self, trainer, epoch, metrics, checkpoint):
            seconds.append(round(float(metrics["train_seconds_epoch"]), 2))

    Trainer(config(), callbacks=[Collect()], cpus=2).fit()
    return seconds, thread_cpu()


def train_in_thread():
    result = {}
    worker = threading.Thread(target=lambda: result.update(out=train()))
    worker.start()
    worker.join()
    return result["out"]


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in MODES:
        sys.exit(f"usage: ray_overhead.py {{{'|'.join(MODES)}}}")
    mode = sys.argv[1]
    body = train_in_thread if mode.endswith("thread") else train
    if "ray" in mode:
        import ray

        ray.init(num_cpus=2, log_to_driver=False, include_dashboard=not mode.endswith("nodash"))
    if mode.startswith("ray"):
        seconds, threads = ray.get(ray.remote(num_cpus=2)(body).remote())
    else:
        seconds, threads = body()
    print(f"{mode}: median train_seconds_epoch of epochs 2-5 {statistics.median(seconds[1:]):.2f} s "
          f"(all: {seconds}); busiest threads, CPU s: {threads}")


if __name__ == "__main__":
    main()
