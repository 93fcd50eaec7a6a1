# Taken from rs-embed (https://github.com/cybergis/rs-embed), tests/test_embedding.py at commit
# 6f46d0c54a4b8d6e386f9f4ed38fe6344ef92ce1, Apache-2.0 (see README.md in this folder): its two tests of the
# public Embedding container, verbatim. Changed: the imports only (rs_embed.core.embedding -> omniembed.geo).
# Not taken: the two tests of rs-embed's internal embedders.meta helper and of its own embedder sources.
import numpy as np
import xarray as xr

from omniembed.geo import Embedding


def test_embedding_numpy():
    data = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    meta = {"model": "test"}
    emb = Embedding(data=data, meta=meta)
    assert emb.data is data
    assert emb.meta["model"] == "test"


def test_embedding_xarray():
    da = xr.DataArray(np.zeros((3, 4, 4)), dims=["C", "H", "W"])
    emb = Embedding(data=da, meta={"mode": "grid"})
    assert emb.data.dims == ("C", "H", "W")
    assert emb.data.shape == (3, 4, 4)
