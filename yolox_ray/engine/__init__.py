"""The training engine: plain torch + torch.distributed (no Ray, no MLflow)."""

from yolox_ray.engine.trainer import NonFiniteLossError, Trainer

__all__ = ["NonFiniteLossError", "Trainer"]
