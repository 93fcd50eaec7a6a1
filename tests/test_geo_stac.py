"""The stac backend against a static STAC catalog of real COGs served on 127.0.0.1 with HTTP range requests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geo_data import CONV_SPEC, geo_engine, shared_geo_dir
from omniembed.errors import InputUnreadable, ParameterInvalid
from omniembed.geo import BBox, OutputSpec, SensorSpec, TemporalSpec, get_embedding
from omniembed.geo.backends.stac import StacBackend
from omniembed.settings import Settings

X0, Y0 = 355590.0, 3454240.0
BANDS = ("B02", "B03", "B04", "B08")


class RangeServer(ThreadingHTTPServer):
    root: Path
    ranges: list[str]
    searches: list[dict[str, Any]]


class Handler(BaseHTTPRequestHandler):
    server: RangeServer

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes | None:
        path = self.server.root / self.path.lstrip("/").split("?")[0]
        return path.read_bytes() if path.is_file() else None

    def do_HEAD(self) -> None:
        body = self._body()
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_POST(self) -> None:  # STAC API item search: the items, filtered by collection and datetime
        length = int(self.headers.get("Content-Length") or 0)
        query = json.loads(self.rfile.read(length) or b"{}")
        self.server.searches.append(query)
        features = [json.loads(p.read_text()) for p in sorted((self.server.root / "s2" / "items").glob("*/item.json"))]
        when = query.get("datetime")
        if when:
            start, _, end = when.partition("/")
            features = [f for f in features if start[:10] <= f["properties"]["datetime"][:10] < end[:10]]
        body = json.dumps({"type": "FeatureCollection", "features": features, "links": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/geo+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        body = self._body()
        if body is None:
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            self.server.ranges.append(rng)
            start_s, _, end_s = rng[6:].partition("-")
            start, end = int(start_s), min(int(end_s) if end_s else len(body) - 1, len(body) - 1)
            chunk = body[start:end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
        else:
            chunk = body
            self.send_response(200)
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/json" if self.path.endswith(".json") else "image/tiff")
        self.end_headers()
        self.wfile.write(chunk)


def _item(base: str, item_id: str, day: str, cloud: float, assets: dict[str, Any], bbox: list[float]) -> dict:
    x0, y0, x1, y1 = bbox
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id,
            "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
            "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]},
            "bbox": bbox, "properties": {"datetime": f"{day}T02:30:00Z", "eo:cloud_cover": cloud},
            "links": [{"rel": "collection", "href": f"{base}/s2/collection.json"}], "assets": assets,
            "collection": "s2"}


@pytest.fixture(scope="module")
def stac_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, RangeServer, Path]]:
    import rasterio

    geo = shared_geo_dir(tmp_path_factory)
    root = tmp_path_factory.mktemp("stac")
    server = RangeServer(("127.0.0.1", 0), Handler)
    server.root, server.ranges, server.searches = root, [], []
    base = f"http://127.0.0.1:{server.server_address[1]}"
    # item 1 (2022, 5 % cloud): one single-band COG per band; item 2 (2021, 80 % cloud): one 4-band COG
    import importlib.util

    spec = importlib.util.spec_from_file_location("mk", Path(__file__).parent / "data" / "make_geo_data.py")
    assert spec is not None and spec.loader is not None
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    with rasterio.open(geo / "s2" / "s2_20220715.tif") as src:
        data, crs, tr = src.read(), src.crs.to_string(), src.transform
    assets = {}
    for i, b in enumerate(BANDS):
        mk.write_cog(root / "s2" / "items" / "a" / f"{b}.tif", data[i:i + 1].copy(), crs, tr, names=(b,), nodata=0)
        assets[b] = {"href": f"{base}/s2/items/a/{b}.tif", "type": "image/tiff; application=geotiff",
                     "roles": ["data"], "eo:bands": [{"name": b}]}
    (root / "s2" / "items" / "b").mkdir(parents=True)
    (root / "s2" / "items" / "b" / "all.tif").write_bytes((geo / "s2" / "s2_20210301.tif").read_bytes())
    bbox = [121.478, 31.186, 121.510, 31.214]
    items = {"a": _item(base, "s2_20220715", "2022-07-15", 5.0, assets, bbox),
             "b": _item(base, "s2_20210301", "2021-03-01", 80.0, {"data": {
                 "href": f"{base}/s2/items/b/all.tif", "type": "image/tiff; application=geotiff", "roles": ["data"],
                 "eo:bands": [{"name": b} for b in BANDS]}}, bbox)}
    for key, item in items.items():
        (root / "s2" / "items" / key / "item.json").write_text(json.dumps(item))
    collection = {"type": "Collection", "stac_version": "1.0.0", "id": "s2", "description": "spyndex S2 sample",
                  "license": "proprietary", "extent": {"spatial": {"bbox": [bbox]},
                                                       "temporal": {"interval": [["2021-01-01T00:00:00Z", None]]}},
                  "links": [{"rel": "root", "href": f"{base}/catalog.json"}]
                  + [{"rel": "item", "href": f"{base}/s2/items/{k}/item.json"} for k in items]}
    (root / "s2" / "collection.json").write_text(json.dumps(collection))
    catalog = {"type": "Catalog", "stac_version": "1.0.0", "id": "test", "description": "loopback catalog",
               "links": [{"rel": "root", "href": f"{base}/catalog.json"},
                         {"rel": "child", "href": f"{base}/s2/collection.json"}]}
    (root / "catalog.json").write_text(json.dumps(catalog))
    api = {"type": "Catalog", "stac_version": "1.0.0", "id": "api", "description": "loopback STAC API",
           "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search",
                          "https://api.stacspec.org/v1.0.0/item-search#query"],
           "links": [{"rel": "self", "href": f"{base}/api.json"}, {"rel": "root", "href": f"{base}/api.json"},
                     {"rel": "search", "href": f"{base}/search", "type": "application/geo+json", "method": "POST"}]}
    (root / "api.json").write_text(json.dumps(api))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"{base}/catalog.json", server, geo
    server.shutdown()
    server.server_close()


def settings() -> Settings:
    return Settings(hub_offline=True, allow_private_urls=True)


def box(col0: int, row0: int, cols: int, rows: int) -> BBox:
    return BBox(X0 + 10 * col0, Y0 - 10 * (row0 + rows), X0 + 10 * (col0 + cols), Y0 - 10 * row0, crs="EPSG:32651")


def test_stac_per_band_assets_filtered_by_time_and_cloud(stac_url: tuple[str, RangeServer, Path]) -> None:
    import rasterio

    url, server, geo = stac_url
    with rasterio.open(geo / "s2" / "s2_20220715.tif") as src:
        orig = src.read().astype(np.float32)
    server.ranges.clear()
    r = StacBackend().read(box(20, 30, 64, 48), TemporalSpec.year(2022).window(), SensorSpec(url + "::s2", bands=BANDS),
                           settings())
    assert r.sources == ("s2_20220715",) and r.bands == BANDS
    np.testing.assert_array_equal(r.image, orig[:, 30:78, 20:84])
    assert server.ranges, "GDAL read the COGs with HTTP range requests"
    fetched = sum(int(b) - int(a) + 1 for a, b in (r[6:].split("-") for r in server.ranges))
    total = sum((server.root / "s2" / "items" / "a" / f"{b}.tif").stat().st_size for b in BANDS)
    assert fetched < total / 2, (fetched, total)  # windowed: only the needed blocks (and headers) were read
    # without a time window the cloudy 2021 item is dropped at 30 % max cloud, kept at 90 %
    assert StacBackend().read(box(0, 0, 16, 16), None, SensorSpec(url, bands=BANDS), settings()).sources == \
        ("s2_20220715",)
    both = StacBackend().read(box(0, 0, 300, 300), None, SensorSpec(url, bands=("B04",), cloudy_pct=90,
                                                                     composite="frames"), settings())
    assert both.sources == ("s2_20220715", "s2_20210301") and both.data.shape == (2, 1, 300, 300)
    np.testing.assert_array_equal(both.data[0, 0], orig[2, :, ::-1])  # 2021 (mirrored) frame first
    np.testing.assert_array_equal(both.data[1, 0], orig[2])


def test_stac_errors_and_ssrf_guard(stac_url: tuple[str, RangeServer, Path]) -> None:
    url, _, _ = stac_url
    with pytest.raises(InputUnreadable, match="no STAC item"):
        StacBackend().read(box(0, 0, 16, 16), TemporalSpec.year(2019).window(), SensorSpec(url, bands=BANDS),
                           settings())
    with pytest.raises(ParameterInvalid, match="loopback"):
        StacBackend().read(box(0, 0, 16, 16), None, SensorSpec(url, bands=BANDS), Settings(hub_offline=True))


def test_get_embedding_through_stac_equals_local(stac_url: tuple[str, RangeServer, Path], tmp_path: Path) -> None:
    url, _, geo = stac_url
    eng = geo_engine(tmp_path, CONV_SPEC, allow_private_urls=True)
    roi = box(40, 40, 128, 96)
    via_stac = get_embedding("test-conv-geo", spatial=roi, temporal=TemporalSpec.year(2022),
                             sensor=SensorSpec(url), backend="stac", output=OutputSpec.grid(), engine=eng)
    via_local = get_embedding("test-conv-geo", spatial=roi, temporal=TemporalSpec.year(2022),
                              backend=f"local:{geo / 's2'}", output=OutputSpec.grid(), engine=eng)
    np.testing.assert_array_equal(via_stac.data.values, via_local.data.values)
    # the same place on the map; the attrs are the meta too (rs-embed's), which names each call's own source
    assert via_stac.data.attrs["crs"] == via_local.data.attrs["crs"]
    assert via_stac.data.attrs["transform"] == via_local.data.attrs["transform"]
    np.testing.assert_array_equal(via_stac.data.x.values, via_local.data.x.values)
    np.testing.assert_array_equal(via_stac.data.y.values, via_local.data.y.values)
    differ = {k for k in via_local.data.attrs if via_stac.data.attrs.get(k) != via_local.data.attrs[k]}
    assert differ <= {"backend", "sensor", "source", "input", "timings", "preprocessing"}, differ
    assert via_stac.data.attrs["backend"] == "stac" and via_local.data.attrs["backend"].startswith("local:")


def test_stac_api_item_search(stac_url: tuple[str, RangeServer, Path]) -> None:
    import rasterio

    url, server, geo = stac_url
    api = url.replace("catalog.json", "api.json")
    server.searches.clear()
    r = StacBackend().read(box(20, 30, 64, 48), TemporalSpec.year(2022).window(), SensorSpec(api + "::s2", bands=BANDS),
                           settings())
    assert r.sources == ("s2_20220715",)
    with rasterio.open(geo / "s2" / "s2_20220715.tif") as src:
        np.testing.assert_array_equal(r.image, src.read()[:, 30:78, 20:84].astype(np.float32))
    sent = server.searches[0]
    assert sent["collections"] == ["s2"] and sent["datetime"].startswith("2022-01-01")
    assert sent["query"] == {"eo:cloud_cover": {"lte": 30.0}} and len(sent["bbox"]) == 4
