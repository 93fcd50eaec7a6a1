"""The PyTorch runtime: eager execution under ``inference_mode``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["TorchEncoder"]


class TorchEncoder:
    """Runs an eval-mode module on numpy feeds; inputs are passed positionally in ``input_names`` order."""

    runtime = "torch"

    def __init__(self, module: torch.nn.Module, input_names: tuple[str, ...], device: str, threads: int) -> None:
        if device == "cpu" and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        self.device = device
        self.input_names = input_names
        self.module = module.eval().to(device)

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        tensors = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device) for n in self.input_names]
        with torch.inference_mode():
            out = self.module(*tensors)
        result: np.ndarray = out.float().cpu().numpy()
        return result
