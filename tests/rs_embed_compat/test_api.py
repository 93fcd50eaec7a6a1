# Taken from rs-embed (https://github.com/cybergis/rs-embed), tests/test_api.py at commit
# 6f46d0c54a4b8d6e386f9f4ed38fe6344ef92ce1, Apache-2.0 (see README.md in this folder): the tests of the public
# API that need no mock embedder registered in rs-embed's internal registry, copied verbatim, with their
# module's helpers (_SPATIAL, _TEMPORAL). Changed: the imports only (rs_embed.* -> omniembed.geo).
"""Tests for the public API (get_embedding, get_embeddings_batch, export_batch).

These use a mock embedder registered in the test so they don't require
GEE, torch, or any real model weights.
"""

import pytest

from omniembed.geo import list_models
from omniembed.geo import (
    export_batch,
    get_embedding,
    get_embeddings_batch,
)
from omniembed.geo import ModelError
from omniembed.geo import FetchSpec, OutputSpec, PointBuffer, SensorSpec, TemporalSpec
from omniembed.geo import (
    ExportConfig,
    ExportLayout,
    ExportModelRequest,
    ExportTarget,
)

# ── helpers ────────────────────────────────────────────────────────

_SPATIAL = PointBuffer(lon=0.0, lat=0.0, buffer_m=512)
_TEMPORAL = TemporalSpec.year(2024)


def test_get_embedding_unknown_model():
    with pytest.raises(ModelError, match="Unknown model"):
        get_embedding("nonexistent", spatial=_SPATIAL)


def test_get_embedding_rejects_sensor_and_fetch_together():
    with pytest.raises(ModelError, match="Use either sensor=... or fetch=..., not both"):
        get_embedding(
            "mock_model",
            spatial=_SPATIAL,
            sensor=SensorSpec(collection="COLL", bands=("B1",)),
            fetch=FetchSpec(scale_m=20),
        )


def test_get_embedding_rejects_model_kwargs_for_unsupported_model():
    with pytest.raises(ModelError, match="does not accept model-specific keyword arguments"):
        get_embedding("mock_model", spatial=_SPATIAL, variant="large")


def test_get_embeddings_batch_empty():
    with pytest.raises(ModelError, match="non-empty"):
        get_embeddings_batch("mock_model", spatials=[], temporal=_TEMPORAL)


def test_output_spec_rejects_invalid_values_at_construction():
    """Regression (review M8): an invalid mode/pooling must be impossible to
    construct — several embedders dispatch pooling with a plain if/else where
    an unvalidated typo silently produced mean-pooled results."""
    from omniembed.geo import SpecError

    with pytest.raises(SpecError, match="Unknown output mode"):
        OutputSpec(mode="gird")
    with pytest.raises(SpecError, match="Unknown pooling"):
        OutputSpec(mode="pooled", pooling="median")
    with pytest.raises(SpecError, match="Unknown grid_orientation"):
        OutputSpec(mode="grid", grid_orientation="south_up")


def test_export_batch_empty_spatials():
    with pytest.raises(ModelError, match="non-empty"):
        export_batch(
            spatials=[],
            temporal=_TEMPORAL,
            models=["mock_model"],
            target=ExportTarget.per_item("/tmp"),
        )


def test_export_batch_rejects_non_list_spatials():
    """_validate_spatials requires an actual list, not a tuple or single spec."""

    with pytest.raises(ModelError, match="non-empty"):
        export_batch(
            spatials=(_SPATIAL,),
            temporal=_TEMPORAL,
            models=["mock_model"],
            target=ExportTarget.per_item("/tmp"),
        )

    with pytest.raises(ModelError, match="non-empty"):
        export_batch(
            spatials=_SPATIAL,
            temporal=_TEMPORAL,
            models=["mock_model"],
            target=ExportTarget.per_item("/tmp"),
        )


def test_export_batch_empty_models():
    with pytest.raises(ModelError, match="non-empty"):
        export_batch(
            spatials=[_SPATIAL],
            temporal=_TEMPORAL,
            models=[],
            target=ExportTarget.per_item("/tmp"),
        )


def test_export_batch_unsupported_format():
    with pytest.raises(ModelError, match="Unsupported export format"):
        export_batch(
            spatials=[_SPATIAL],
            temporal=_TEMPORAL,
            models=["mock_model"],
            target=ExportTarget.per_item("/tmp"),
            config=ExportConfig(format="parquet"),
        )


def test_export_batch_names_length_mismatch(tmp_path):
    with pytest.raises(ModelError, match="same length"):
        export_batch(
            spatials=[_SPATIAL, _SPATIAL],
            temporal=_TEMPORAL,
            models=["mock_model"],
            target=ExportTarget.per_item(str(tmp_path), names=["only_one"]),
        )


def test_export_batch_combined_target_requires_out_file():
    with pytest.raises(ModelError, match="requires out_file"):
        export_batch(
            spatials=[_SPATIAL],
            temporal=_TEMPORAL,
            models=["mock_model"],
            target=ExportTarget(layout=ExportLayout.COMBINED),
        )


def test_export_batch_per_item_target_requires_out_dir():
    with pytest.raises(ModelError, match="requires out_dir"):
        export_batch(
            spatials=[_SPATIAL],
            temporal=_TEMPORAL,
            models=["mock_model"],
            target=ExportTarget(layout=ExportLayout.PER_ITEM),
        )


def test_public_list_models_uses_catalog_not_runtime_registry():
    models = list_models()
    assert "remoteclip" in models
    assert "remoteclip_s2rgb" not in models
    assert models == sorted(models)


def test_public_list_models_can_include_aliases():
    models = list_models(include_aliases=True)
    assert "remoteclip" in models
    assert "remoteclip_s2rgb" in models


def test_export_batch_rejects_input_prep_in_both_places(tmp_path):
    with pytest.raises(ModelError, match="pass it once"):
        export_batch(
            spatials=[_SPATIAL],
            temporal=_TEMPORAL,
            models=["mock_model"],
            target=ExportTarget.combined(str(tmp_path / "combined")),
            config=ExportConfig(show_progress=False, input_prep="tile"),
            backend="auto",
            input_prep="resize",
        )


def test_export_model_request_configure_builds_model_config():
    req = ExportModelRequest.configure("dofa", variant="large")
    assert req.name == "dofa"
    assert req.model_config == {"variant": "large"}
    assert req.sensor is None
    assert req.fetch is None
    assert req.modality is None


def test_export_model_request_configure_no_model_kwargs_gives_none():
    req = ExportModelRequest.configure("prithvi")
    assert req.name == "prithvi"
    assert req.model_config is None


def test_export_model_request_configure_multiple_kwargs():
    req = ExportModelRequest.configure("dofa", variant="base", image_size=224)
    assert req.model_config == {"variant": "base", "image_size": 224}
