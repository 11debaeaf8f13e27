"""Read the official state-dict listings (`official_state_dicts/*.txt`, copied from the project's
reference: one `key shape` line per tensor, shape `AxBxC` or `scalar`) and fake checkpoints from them."""

from __future__ import annotations

from pathlib import Path

import torch

LISTINGS = Path(__file__).parent / "official_state_dicts"
OFFICIAL_MODELS = ("yolox_nano", "yolox_tiny", "yolox_s", "yolox_m", "yolox_l", "yolox_x", "yolox_darknet53")


def parse_listing(name: str) -> tuple[dict[str, tuple[int, ...]], int]:
    """Ordered {key: shape} and the parameter count stated in the header line."""
    lines = (LISTINGS / f"{name}.txt").read_text().splitlines()
    header = lines[0]
    assert header.startswith("#") and "parameters=" in header, header
    params = int(header.rsplit("parameters=", 1)[1])
    shapes: dict[str, tuple[int, ...]] = {}
    for line in lines[1:]:
        if not line.strip():
            continue
        key, shape = line.split()
        shapes[key] = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
    return shapes, params


def fake_official_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the official keys and shapes; BN statistics kept plausible."""
    gen = torch.Generator().manual_seed(seed)
    shapes, _ = parse_listing(name)
    sd = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(1000 + len(sd), dtype=torch.long)
        elif key.endswith(("running_var", "bn.weight")):
            sd[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith(".conv.weight") or (key.startswith("head.") and key.endswith(".weight")):
            fan_in = max(1, int(torch.tensor(shape[1:]).prod()))
            sd[key] = torch.randn(shape, generator=gen) / fan_in ** 0.5
        else:
            sd[key] = torch.randn(shape, generator=gen) * 0.1
    return sd
