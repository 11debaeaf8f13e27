"""The recipe search reuses only recorded cells of the schedule the preset gives now (scripts/quick_row_recipes.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("quick_row_recipes", ROOT / "scripts" / "quick_row_recipes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cells_of_another_schedule_are_not_at_the_budget():
    recipes = _script()
    # 18 epochs of the quick recipe (72 epochs: warm-up 4, no-aug 4, EMA horizon 100 updates; the preset
    # runs it at 48: warm-up 2.667, no-aug 3, horizon 67) rescale to
    # warm-up 1, no-aug 1, EMA horizon 25 updates (decay 0.96).
    today = {"epochs": 18, "size": 128, "warmup_epochs": 1.0, "no_aug_epochs": 1, "ema_decay": 0.96}
    assert recipes.at_budget(today, 18, 128)
    assert recipes.at_budget(today, 18, None)
    assert not recipes.at_budget(today, 18, 160)
    assert not recipes.at_budget(today, 24, 128)
    # The recorded search ran the old 18-epoch schedule (warm-up 1, no-aug 6): another budget now.
    assert not recipes.at_budget({**today, "no_aug_epochs": 6}, 18, 128)
    assert not recipes.at_budget({**today, "ema_decay": 0.9998}, 18, 128)  # the official EMA
    assert not recipes.at_budget({"epochs": 18, "size": 128}, 18, 128)  # a cell that does not say


def test_the_recorded_cells_say_which_schedule_they_ran():
    recorded = json.loads((ROOT / "yolox_ray" / "ablation_recipes.json").read_text())
    assert recorded["all"] and all({"warmup_epochs", "no_aug_epochs"} <= set(cell) for cell in recorded["all"])
    # The cells of the search before the EMA was scaled to the run (official 0.9998, no ema_decay
    # recorded) are kept as history but are not today's budget, so --reuse never takes them.
    old = [cell for cell in recorded["all"] if cell.get("ema_decay") is None]
    assert old and not any(_script().at_budget(cell, 18, 128) for cell in old)
    current = _script().recorded_results(18, 128)
    assert {row for row, _ in current} == set(recorded["rows"])  # the chosen lrs come from today's cells


def test_a_row_rechosen_at_the_full_budget_overrides_the_reduced_budget_pick(tmp_path):
    from yolox_ray.ablation import quick_recipes

    recipes = tmp_path / "recipes.json"
    recipes.write_text(json.dumps({
        "rows": {"simota": {"overrides": {"train.lr_per_image": 0.0025}},
                 "anchor_free": {"overrides": {"train.lr_per_image": 0.005}}},
        "full_budget": {"rows": {"anchor_free": {"overrides": {"train.lr_per_image": 0.00125}}}},
    }))
    assert quick_recipes(recipes) == {"simota": {"train.lr_per_image": 0.0025},
                                      "anchor_free": {"train.lr_per_image": 0.00125}}
    assert quick_recipes(tmp_path / "missing.json") == {}
