"""The PyTorch runtime: eager execution under ``inference_mode``, optionally under bf16 autocast."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["TorchEncoder"]


class TorchEncoder:
    """Runs an eval-mode module on numpy feeds; inputs are passed positionally in ``input_names`` order.

    ``bf16=True`` runs matmuls and convolutions in bfloat16 (autocast keeps reductions such as softmax and
    layer norm in float32); the output is returned as float32.
    """

    runtime = "torch"

    def __init__(
        self, module: torch.nn.Module, input_names: tuple[str, ...], device: str, threads: int, bf16: bool = False
    ) -> None:
        if device == "cpu" and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        self.device = device
        self.input_names = input_names
        self.module = module.eval().to(device)
        self.bf16 = False
        if bf16:
            self.enable_bf16()

    def enable_bf16(self) -> None:
        """Run under bf16 autocast, with Linear/conv weights stored in bf16 once: autocast would otherwise
        cast every weight on every call (the same rounding, repeated). Norms and softmax stay fp32."""
        for m in self.module.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
                m.to(torch.bfloat16)
        self.bf16 = True

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        tensors = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device) for n in self.input_names]
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.module(*tensors)
        result: np.ndarray = out.float().cpu().numpy()
        return result
