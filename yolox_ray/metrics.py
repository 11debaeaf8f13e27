"""Names of the metrics that cross module boundaries, defined once.

The trainer produces them, the Train driver and the Tune callback forward them, tracking logs them
and the report and study scripts read them: a rename here is a rename everywhere (the study's
default `metric`, the MLflow metric names, the Tune results, trials.json and the report).
"""

from __future__ import annotations

# COCO AP[0.5:0.95] and AP at IoU 0.5 (COCOeval.stats[0] and [1]); AP is a study's default metric.
AP = "AP"
AP50 = "AP50"
# COCOeval's 12 summary statistics, in the order of `COCOeval.stats`.
COCO_STAT_KEYS: tuple[str, ...] = (AP, AP50, "AP75", "APs", "APm", "APl",
                                   "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# The best AP of a run so far (the trainer's, reported every epoch; Train keeps checkpoints by AP).
BEST_AP = f"best_{AP}"
# Re-evaluation at eval.low_conf_thresh of a run whose final AP is below 1 % (the table shows both).
AP_LOW_CONF = f"{AP}_low_conf"
AP50_LOW_CONF = f"{AP50}_low_conf"
# The training loss of an epoch (mean over its iterations) and the run's training time so far, across resumes.
LOSS = "loss"
TRAIN_SECONDS = "train_seconds"

# The model's cost, a study's optional further objectives (all minimised; `yolox_ray.engine.model_cost`
# measures them in the trial's rank-0 worker and adds them to every epoch's metrics).
PARAMS = "params"  # parameter count (`models.count_params`)
GFLOPS = "gflops"  # GFLOPs of one forward pass at data.test_size (`models.count_gflops`, the paper's rule)
LATENCY_MS = "latency_ms"  # measured forward time at data.test_size, batch 1 (`models.measure_latency_ms`)
MODEL_COST_KEYS: tuple[str, ...] = (PARAMS, GFLOPS, LATENCY_MS)
