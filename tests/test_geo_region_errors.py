"""Errors stay per region: a region whose backend read fails in an unforeseen way (a bug, a dropped connection)
is an error for that region, with its index in the caller's list; every other region of the call is still
embedded, equal to embedding it alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geo_data import CONV_SPEC, geo_engine, shared_geo_dir
from omniembed.api import Engine
from omniembed.errors import InternalError, OmniEmbedError
from omniembed.geo import BBox, LocalBackend, SensorSpec, TemporalSpec, get_embedding, get_embeddings_batch

X0, Y0 = 355590.0, 3454240.0


class FlakyBackend:
    """A local backend that raises a plain exception (not an omniembed error) for regions west of ``x``."""

    name = "flaky"

    def __init__(self, x: float) -> None:
        self.x = x
        self.inner = LocalBackend()

    def read(self, spatial: Any, temporal: Any, sensor: SensorSpec, settings: Any) -> Any:
        if spatial.bounds[0] < self.x:
            raise ConnectionResetError("the raster server hung up")
        return self.inner.read(spatial, temporal, sensor, settings)


@pytest.fixture(scope="module")
def eng(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return geo_engine(tmp_path_factory.mktemp("region-errors"), CONV_SPEC)


@pytest.fixture(scope="module")
def geo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_geo_dir(tmp_path_factory)


def test_a_failing_read_fails_only_its_region(eng: Engine, geo_dir: Path) -> None:
    boxes = [BBox(X0 + dx, Y0 - 1140, X0 + dx + 640, Y0 - 500, crs="EPSG:32651") for dx in (500, 100, 900, 50, 700)]
    sensor = SensorSpec(str(geo_dir / "s2"), bands=("B02", "B03", "B04", "B08"))
    backend = FlakyBackend(X0 + 400)  # regions 1 and 3 start west of it
    year = TemporalSpec.year(2022)
    out = get_embeddings_batch("test-conv-geo", spatials=boxes, temporal=year, sensor=sensor, backend=backend,
                               engine=eng, errors="return")
    for i in (1, 3):
        error = out[i]
        assert isinstance(error, InternalError) and error.index == i and error.incident in error.message
    for i in (0, 2, 4):
        alone = get_embedding("test-conv-geo", spatial=boxes[i], temporal=year, sensor=sensor, backend=LocalBackend(),
                              engine=eng)
        np.testing.assert_allclose(out[i].data, alone.data, rtol=1e-5, atol=1e-6)
    with pytest.raises(OmniEmbedError) as raised:  # errors="raise": the first bad region, with its index
        get_embeddings_batch("test-conv-geo", spatials=boxes, temporal=year, sensor=sensor, backend=backend,
                             engine=eng)
    assert raised.value.index == 1
