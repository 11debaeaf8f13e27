"""Names of the metrics that cross module boundaries, defined once.

The trainer produces them, the Train driver and the Tune callback forward them, tracking logs them
and the report and study scripts read them: a rename here is a rename everywhere.
"""

from __future__ import annotations

# COCOeval's 12 summary statistics, in the order of `COCOeval.stats`.
COCO_STAT_KEYS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                                   "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# Re-evaluation at eval.low_conf_thresh of a run whose final AP is below 1 % (the table shows both).
AP_LOW_CONF = "AP_low_conf"
AP50_LOW_CONF = "AP50_low_conf"
