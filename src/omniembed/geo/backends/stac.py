"""The ``stac`` backend: a STAC API (item search through ``pystac-client``) or a static catalog (walked with
``pystac``), items filtered by region, time and cloud cover, assets read as COGs over HTTP by rasterio
(GDAL range requests, only the blocks the region needs).

``SensorSpec(collection="https://host/stac" | "https://host/catalog.json", ...)``; append ``::ID`` to
restrict to one collection. Bands map to assets by key, ``eo:bands`` name or common name (one COG per
band), or to the bands of one multi-band asset. JSON documents are fetched with omniembed's guarded
fetcher; COG hosts are checked by the same SSRF rule before GDAL opens them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from omniembed.errors import InputUnreadable, OmniEmbedError, ParameterInvalid, RuntimeUnavailable
from omniembed.geo.backends.base import (
    Raster,
    _band_key,
    composite,
    lon_overlap,
    read_into,
    select_bands,
    target_grid,
)
from omniembed.geo.specs import SensorSpec, SpatialSpec, TimeWindow
from omniembed.inputs.fetch import FetchPolicy, check_url, fetch
from omniembed.settings import Settings

__all__ = ["StacBackend", "search_items"]


def _stac_io(settings: Settings) -> Any:
    from pystac.stac_io import DefaultStacIO

    policy = FetchPolicy.from_settings(settings)

    class GuardedStacIO(DefaultStacIO):
        def read_text_from_href(self, href: str) -> str:
            if href.startswith(("http://", "https://")):
                return fetch(href, policy).content.decode("utf-8")
            raise ParameterInvalid(f"STAC documents must be http(s) URLs, not {href!r}", param="sensor")

    return GuardedStacIO()


def _item_date(item: Any) -> date | None:
    dt = item.datetime or item.common_metadata.start_datetime
    return dt.date() if dt is not None else None


def _keep(item: Any, spatial: SpatialSpec, temporal: TimeWindow | None, sensor: SensorSpec) -> bool:
    a0, b0, a1, b1 = spatial.lonlat_bounds()
    if item.bbox is not None:
        x0, y0, x1, y1 = item.bbox[:4] if len(item.bbox) == 4 else (item.bbox[0], item.bbox[1], item.bbox[3],
                                                                    item.bbox[4])
        if not (y0 < b1 and b0 < y1 and lon_overlap((x0, x1), (a0, a1))):  # an item across ±180: x0 > x1
            return False
    day = _item_date(item)
    if temporal is not None and day is not None and not temporal.contains(day):
        return False
    cloud = item.properties.get("eo:cloud_cover")
    return not (sensor.cloudy_pct is not None and cloud is not None and float(cloud) > sensor.cloudy_pct)


def search_items(url: str, collection: str | None, spatial: SpatialSpec, temporal: TimeWindow | None,
                 sensor: SensorSpec, settings: Settings, limit: int = 50) -> list[Any]:
    """Items of a STAC API (searched) or a static catalog (walked), filtered client-side as well."""
    import pystac

    stac_io = _stac_io(settings)
    try:
        root = pystac.read_file(url, stac_io=stac_io)
    except OmniEmbedError:
        raise
    except Exception as exc:
        raise InputUnreadable(f"{url} is not a readable STAC catalog or API: {exc}", param="sensor") from None
    links = {link.rel for link in root.links}
    conforms = any("item-search" in c for c in getattr(root, "extra_fields", {}).get("conformsTo", []))
    items: Iterable[Any]
    if "search" in links and conforms:
        from pystac_client import Client

        check_url(url, FetchPolicy.from_settings(settings))  # searches go through pystac-client's own client
        client = Client.open(url, timeout=settings.fetch_timeout_sec)
        when = f"{temporal.start.isoformat()}/{temporal.end.isoformat()}" if temporal else None
        query = {"eo:cloud_cover": {"lte": sensor.cloudy_pct}} if sensor.cloudy_pct is not None else None
        items = client.search(collections=[collection] if collection else None, bbox=list(spatial.lonlat_bounds()),
                              datetime=when, query=query, max_items=limit).items()
    else:
        if not isinstance(root, pystac.Catalog):
            raise InputUnreadable(f"{url} is a STAC {type(root).__name__}, not a catalog or API", param="sensor")
        if collection:
            child = root.get_child(collection, recursive=True)
            if child is None:
                raise ParameterInvalid(f"the catalog {url} has no collection {collection!r}", param="sensor")
            root = child
        items = root.get_items(recursive=True)
    chosen = [it for it in items if _keep(it, spatial, temporal, sensor)]
    return chosen[:limit]


def _asset_for_band(item: Any, band: str | int) -> Any | None:
    if isinstance(band, int):
        return None
    key = _band_key(band)
    for name, asset in item.assets.items():
        names = {_band_key(name)}
        for b in asset.extra_fields.get("eo:bands", []) or []:
            names |= {_band_key(str(b.get("name", ""))), _band_key(str(b.get("common_name", "")))}
        if key in names and len(asset.extra_fields.get("eo:bands", []) or [None]) == 1:
            return asset
    return None


def _data_asset(item: Any) -> Any:
    for asset in item.assets.values():
        if "data" in (asset.roles or []) or "tiff" in (asset.media_type or ""):
            return asset
    raise InputUnreadable(f"STAC item {item.id} has no GeoTIFF data asset", param="sensor")


@dataclass(frozen=True)
class StacBackend:
    name: str = "stac"

    def read(self, spatial: SpatialSpec, temporal: TimeWindow | None, sensor: SensorSpec,
             settings: Settings) -> Raster:
        try:
            import pystac  # noqa: F401
            import rasterio
        except ImportError:
            raise RuntimeUnavailable("the stac backend needs pystac, pystac-client and rasterio: "
                                     "pip install 'omniembed[geo]'", param="backend",
                                     hint="pip install 'omniembed[geo]'") from None
        url, _, coll = sensor.collection.partition("::")
        items = search_items(url, coll or None, spatial, temporal, sensor, settings)
        if not items:
            when = f" between {temporal.start} and {temporal.end}" if temporal else ""
            raise InputUnreadable(f"no STAC item in {sensor.collection} covers the region{when} with cloud cover "
                                  f"<= {sensor.cloudy_pct}%", param="spatial")
        policy = FetchPolicy.from_settings(settings)
        env = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_TIMEOUT": str(int(settings.fetch_timeout_sec)),
               "GDAL_HTTP_MAX_RETRY": "1", "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF"}
        stack, days, sources = [], [], []
        grid = aligned = band_names = None
        with rasterio.Env(**env):
            for item in items:
                per_band = [_asset_for_band(item, b) for b in sensor.bands] if sensor.bands else [None]
                one_per_band = bool(sensor.bands) and all(a is not None for a in per_band)
                groups: list[tuple[Any, list[str | int]]] = [(a, [1]) for a in per_band] if one_per_band else \
                    [(_data_asset(item), list(sensor.bands))]
                names: list[str] = [str(b) for b in sensor.bands] if one_per_band else []
                layers = []
                for asset, wanted in groups:
                    check_url(asset.href, policy)
                    try:
                        ds = rasterio.open(asset.href)
                    except Exception as exc:
                        raise InputUnreadable(f"cannot open {asset.href}: {exc}", param="sensor") from None
                    with ds:
                        if grid is None:
                            grid, aligned = target_grid(spatial, ds.crs, ds.transform, sensor.scale_m, settings)
                        eo = [b.get("name") for b in asset.extra_fields.get("eo:bands", []) or []]
                        desc = [d or (eo[i] if i < len(eo) else None) for i, d in enumerate(ds.descriptions)]
                        nums = [1] if one_per_band else select_bands(wanted, desc, asset.href)
                        if not one_per_band:
                            names = [desc[n - 1] or f"band{n}" for n in nums]
                        same = bool(aligned) and abs(ds.transform.a) == abs(grid.transform.a)
                        layers.append(read_into(ds, grid, nums, sensor, same))
                stack.append(np.concatenate(layers))
                days.append(_item_date(item))
                sources.append(item.id)
                band_names = tuple(names)
        assert grid is not None and band_names is not None
        data, frame_dates = composite(stack, days, sensor)
        if np.isnan(data).all():
            raise InputUnreadable(f"the region has no valid pixels in {sensor.collection}", param="spatial")
        return Raster(data.astype(np.float32), grid, band_names, frame_dates, tuple(sources))
