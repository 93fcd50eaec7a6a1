"""The PyTorch runtime: eager execution under ``inference_mode``, optionally under bf16 autocast.

PyTorch is imported when an encoder is first made, so naming this module (as ``runtime`` does) loads no ML
library."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from omniembed.runtime.base import GraphSpec, named_outputs

if TYPE_CHECKING:
    import torch

__all__ = ["TorchEncoder", "store_weights_bf16"]


def store_weights_bf16(module: torch.nn.Module) -> None:
    """Store Linear/conv weights in bf16 once: autocast would otherwise cast them on every call (the same
    rounding, repeated). Norms, softmax and the rest stay float32 under autocast."""
    import torch

    for m in module.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
            m.to(torch.bfloat16)


class TorchEncoder:
    """Runs an eval-mode module on numpy feeds; inputs are passed positionally in ``input_names`` order.

    The module is built from its ``GraphSpec`` on first use, so a precision that replaces this encoder
    with a compiled one (see ``runtime.precision``) never reads the weights twice.
    ``bf16=True`` runs matmuls and convolutions in bfloat16 (autocast keeps reductions such as softmax and
    layer norm in float32); the output is returned as float32.
    """

    runtime = "torch"

    def __init__(self, graph: GraphSpec, device: str, threads: int, bf16: bool = False) -> None:
        import torch

        if device == "cpu" and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        self.graph = graph
        self.device = device
        self.input_names = graph.input_names
        self._module: torch.nn.Module | None = None
        self.bf16 = False
        if bf16:
            self.enable_bf16()

    @property
    def module(self) -> torch.nn.Module:
        if self._module is None:
            self._module = self.graph.build().eval().to(self.device)
        return self._module

    def enable_bf16(self) -> None:
        """Run under bf16 autocast, with Linear/conv weights stored in bf16 (``store_weights_bf16``)."""
        store_weights_bf16(self.module)
        self.bf16 = True

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.graph.output_names

    def outputs(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the graph, by name."""
        import torch

        tensors = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device) for n in self.input_names]
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.module(*tensors)
        return named_outputs(self.output_names, out)

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.outputs(feeds)[self.output_names[0]]
