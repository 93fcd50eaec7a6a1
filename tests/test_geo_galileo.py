"""galileo: omniembed's own Galileo encoder against the upstream one rs-embed 0.3.1 vendors (nasaharvest's
single_file_galileo.py, MIT) with Galileo's real nano weights; end to end against rs-embed's own embedder;
real-weight embeddings of the real Sentinel-2 sample's water, vegetation and bare-soil patches; and strict,
safe loading. The real-weight tests skip when ../shared/weights/galileo-nano is absent."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geo_data import geo_engine, shared_geo_dir
from omniembed.errors import ModelLoadFailed
from omniembed.geo import (
    BBox,
    OutputSpec,
    SensorSpec,
    TemporalSpec,
    TensorBackend,
    get_embedding,
    get_embeddings_batch,
    list_models,
)
from omniembed.models import galileo as G

torch = pytest.importorskip("torch")
WEIGHTS = Path(__file__).parents[2] / "shared" / "weights" / "galileo-nano"
needs_weights = pytest.mark.skipif(not (WEIGHTS / "encoder.pt").is_file(),
                                   reason=f"Galileo's real nano weights are not here ({WEIGHTS})")
S2_GROUP_IDS = (1, 2, 3, 4, 5)  # upstream's space-time group indices of S2_RGB .. S2_SWIR


@pytest.fixture(scope="module")
def geo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_geo_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def upstream() -> Any:
    pytest.importorskip("einops", reason="the upstream Galileo code needs einops (the dev extra)")
    vendored = pytest.importorskip("rs_embed.embedders._vendor.galileo_single_file",
                                   reason="rs-embed 0.3.1's wheel (make test installs it) vendors upstream Galileo")
    return vendored


def sample(geo_dir: Path, row: int = 100, col: int = 100, size: int = 64) -> tuple[np.ndarray, Any, str]:
    """The real S2 sample's four bands (B02 B03 B04 B08) at a window, its transform and CRS."""
    import rasterio
    from affine import Affine

    with rasterio.open(geo_dir / "s2" / "s2_20220715.tif") as src:
        real = src.read().astype(np.float32)[:, row:row + size, col:col + size]
        return real, src.transform @ Affine.translation(col, row), src.crs.to_string()


def ten_bands(real: np.ndarray) -> np.ndarray:
    """Ten S2 bands from the four real ones (red edge, B8A and SWIR stand-ins scaled from red/NIR)."""
    b, g, r, n = real
    return np.stack([b, g, r, r * 1.1, n * 0.7, n * 0.9, n, n * 1.05, r * 1.3, g * 0.9])


def upstream_forward(enc: Any, frames: np.ndarray, months: list[int], groups: tuple[int, ...] = S2_GROUP_IDS,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """rs-embed's default feed of upstream's Encoder for one region (T, 10, S, S): the S2 bands in the space-time
    slots, the given S2 groups seen and everything else masked; pooled = ``average_tokens``, grid =
    ``apply_mask_and_average_tokens_per_patch`` (D, S/8, S/8)."""
    t, _, s, _ = frames.shape
    s_t_x = np.zeros((1, s, s, t, 13), np.float32)
    s_t_x[0, ..., 2:12] = frames.transpose(2, 3, 0, 1)
    s_t_m = np.ones((1, s, s, t, 7), np.float32)
    s_t_m[..., list(groups)] = 0.0
    feed = [torch.from_numpy(a) for a in (
        s_t_x, np.zeros((1, s, s, 16), np.float32), np.zeros((1, t, 6), np.float32), np.zeros((1, 18), np.float32),
        s_t_m, np.ones((1, s, s, 3), np.float32), np.ones((1, t, 3), np.float32), np.ones((1, 4), np.float32))]
    with torch.no_grad():
        out = enc(*feed, torch.tensor([months]), patch_size=8)
        pooled = enc.average_tokens(*out[:8])[0]
        grid = enc.apply_mask_and_average_tokens_per_patch(*out[:8])[0].reshape(s // 8, s // 8, -1)
    return pooled.numpy(), grid.permute(2, 0, 1).numpy()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of (n, D) arrays."""
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def dated(months: list[int], year: int = 2022) -> np.ndarray:
    return np.array([[year, datetime.date(year, m + 1, 15).timetuple().tm_yday] for m in months], np.float32)


TINY = {"embedding_size": 32, "depth": 1, "num_heads": 4, "mlp_ratio": 4, "max_sequence_length": 24,
        "max_patch_size": 8}


def save_tiny_galileo(root: Path) -> dict[str, Any]:
    """A tiny random Galileo in the official layout (root/galileo/{encoder.pt,config.json}; galileo_raw links to
    it), for tests that need any loadable galileo (e.g. tests/test_geo_contract.py's engine); its state dict."""
    torch.manual_seed(0)
    net = G.build_encoder_module(dict(G.DEFAULTS, **TINY))
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    sd |= {"pos_embed": torch.randn(24, 8), "month_embed.weight": torch.randn(12, 8)}
    sd |= {k: torch.randn(v.shape) * 0.2 for k, v in sd.items() if k.endswith("channel_embed")}
    folder = root / "galileo"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(sd, folder / "encoder.pt")
    (folder / "config.json").write_text(json.dumps({"model": {"encoder": TINY}}))
    if not (root / "galileo_raw").exists():
        (root / "galileo_raw").symlink_to(folder)
    return sd


def galileo_where(geo_dir: Path) -> dict[str, Any]:
    """A region for galileo and its source: ten S2 bands (six derived from the sample's real four) in two dated
    frames of a 64 px window, as ``get_embedding`` keywords (for tests/test_geo_contract.py's contract too)."""
    real, transform, crs = sample(geo_dir, 100, 100)
    ten = ten_bands(real)
    backend = TensorBackend(np.stack([ten[:, ::-1], ten]), transform, crs, bands=G.S2_BANDS,
                            dates=(datetime.date(2022, 3, 1), datetime.date(2022, 7, 15)))
    box = BBox(transform.c, transform.f - 640, transform.c + 640, transform.f, crs=crs)
    return {"spatial": box, "backend": backend, "sensor": SensorSpec("tensor", composite="frames")}


@needs_weights
def test_matches_upstream_encoder_with_real_weights(upstream: Any, geo_dir: Path) -> None:
    """One batch through omniembed's encoder (12 frame slots, fillers masked; one region standardised, one raw
    without red edge, B8A and SWIR) equals upstream's Encoder run on each region as rs-embed feeds it: pooled
    and every grid cell at cosine >= 0.9999."""
    ref = upstream.Encoder.load_from_folder(WEIGHTS, torch.device("cpu")).eval()
    ours = G.build_encoder_module(G.read_config(WEIGHTS)).eval()
    G.load_strict(ours, G.read_checkpoint(WEIGHTS))
    a = ten_bands(sample(geo_dir, 100, 100)[0])
    b = ten_bands(sample(geo_dir, 200, 20)[0])
    # three dated frames, standardised with Galileo's statistics (galileo's default; with raw values in the
    # thousands the small position/month codes hardly move the output, so a wrong code could pass unseen)
    stats = np.array(G.S2_MEAN, np.float32)[:, None, None], np.array(G.S2_STD, np.float32)[:, None, None]
    a = (a - stats[0]) / stats[1]
    frames_a, months_a = np.stack([a, a[:, ::-1], a[:, :, ::-1]]), [2, 6, 10]
    frames_b, months_b = b[None], [7]  # raw (galileo_raw), one frame, four bands read: RGB and NIR 10 m only
    x = np.zeros((2, G.FRAMES, 10, 64, 64), np.float32)
    x[0], x[1] = frames_a[np.minimum(np.arange(G.FRAMES), 2)], frames_b[0]  # fillers repeat the last frame
    x[1, :, [3, 4, 5, 7, 8, 9]] = G.ABSENT
    temporal = np.stack([dated(months_a)[np.minimum(np.arange(G.FRAMES), 2)], dated(months_b * G.FRAMES)])
    with torch.no_grad():
        grid = ours(torch.from_numpy(x), torch.from_numpy(temporal), torch.ones(2)).numpy()
    refs = [upstream_forward(ref, frames_a, months_a), upstream_forward(ref, frames_b, months_b, (1, 3))]
    for i, (ref_pooled, ref_grid) in enumerate(refs):
        pooled = grid[i].mean(axis=(1, 2))
        cells, ref_cells = grid[i].reshape(128, -1).T, ref_grid.reshape(128, -1).T
        print(f"region {i}: pooled max|diff| {np.abs(pooled - ref_pooled).max():.3g}, "
              f"grid max|diff| {np.abs(grid[i] - ref_grid).max():.3g}, "
              f"min cell cosine {cosines(cells, ref_cells).min():.7f}")
        assert cosines(pooled[None], ref_pooled[None])[0] >= 0.9999
        assert cosines(cells, ref_cells).min() >= 0.9999
    # the masking matters: region b with every S2 group seen (its absent bands read as values) differs
    other = upstream_forward(ref, np.where(frames_b < 0, 0, frames_b), months_b)[0]
    assert cosines(other[None], refs[1][0][None])[0] < 0.999


def weights_dir(tmp_path: Path, sd: dict[str, Any] | None = None) -> Path:
    folder = tmp_path / "models" / "galileo"
    folder.mkdir(parents=True)
    shutil.copy(WEIGHTS / "config.json", folder / "config.json")
    if sd is None:
        shutil.copy(WEIGHTS / "encoder.pt", folder / "encoder.pt")
    else:
        torch.save(sd, folder / "encoder.pt")
    (tmp_path / "models" / "galileo_raw").symlink_to(folder)  # normalization="none" runs galileo_raw: same files
    return tmp_path / "models"


@needs_weights
def test_end_to_end_equals_rs_embed_embedder(upstream: Any, tmp_path: Path, geo_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The same pixels through rs-embed 0.3.1's GalileoEmbedder (its input_chw path, real weights) and through
    ``get_embedding("galileo", backend=TensorBackend(...))``: pooled and grid equal. Three frames dated at
    rs-embed's frame midpoints of the window; and one undated composite in a sub-month window (one frame,
    the window's month)."""
    from rs_embed.core.specs import BBox as RsBBox
    from rs_embed.core.specs import OutputSpec as RsOutput
    from rs_embed.core.specs import TemporalSpec as RsTemporal
    from rs_embed.embedders.onthefly_galileo import GalileoEmbedder
    from rs_embed.tools.temporal import temporal_frame_midpoints

    monkeypatch.setenv("RS_EMBED_GALILEO_MODEL_PATH", str(WEIGHTS))
    monkeypatch.setenv("RS_EMBED_GALILEO_AUTO_DOWNLOAD", "0")
    real, transform, crs = sample(geo_dir, 100, 100)
    ten = ten_bands(real)
    eng = geo_engine(tmp_path, model_dir=weights_dir(tmp_path))
    box = BBox(transform.c, transform.f - 640, transform.c + 640, transform.f, crs=crs)
    rs = GalileoEmbedder()
    # three dated frames with Galileo's own normalisation (rs-embed: RS_EMBED_GALILEO_NORM=official_stats); one
    # undated composite fed raw (normalization="none": rs-embed's default)
    cases = [(np.stack([ten, ten[:, ::-1], ten[:, :, ::-1]]), ("2022-03-01", "2022-06-01"), "frames", "official_stats"),
             (ten, ("2022-07-01", "2022-07-20"), "median", "none")]
    for pixels, (start, end), composite, norm in cases:
        monkeypatch.setenv("RS_EMBED_GALILEO_NORM", norm)
        window = RsTemporal.range(start, end)
        dates = tuple(datetime.date.fromisoformat(d) for d in temporal_frame_midpoints(window, 3)) \
            if pixels.ndim == 4 else ()
        backend = TensorBackend(pixels, transform, crs, bands=G.S2_BANDS, dates=dates)
        kw: dict[str, Any] = {"spatial": box, "temporal": TemporalSpec.range(start, end), "backend": backend,
                              "sensor": SensorSpec("tensor", composite=composite), "engine": eng, "runtime": "torch"}
        if norm == "none":
            kw["normalization"] = "raw"  # rs-embed's spelling
        grid = get_embedding("galileo", output=OutputSpec.grid(), **kw)
        pooled = get_embedding("galileo", **kw)
        region = RsBBox(121.49, 31.19, 121.5, 31.2)
        want_pooled = rs.get_embedding(spatial=region, temporal=window, sensor=None, output=RsOutput.pooled(),
                                       backend="auto", input_chw=pixels)
        want_grid = rs.get_embedding(spatial=region, temporal=window, sensor=None, output=RsOutput.grid(),
                                     backend="auto", input_chw=pixels)
        assert want_pooled.meta["n_frames"] == (3 if pixels.ndim == 4 else 1)
        assert pooled.meta.model == ("galileo" if norm == "official_stats" else "galileo_raw")
        ref_grid = np.asarray(want_grid.data)
        print(f"{composite}, {norm}: pooled max|diff| {np.abs(pooled.data - want_pooled.data).max():.3g}, "
              f"grid max|diff| {np.abs(grid.data.values - ref_grid).max():.3g}")
        assert pooled.data.shape == (128,) and grid.data.shape == ref_grid.shape == (128, 8, 8)
        np.testing.assert_allclose(pooled.data, want_pooled.data, rtol=1e-4, atol=2e-5)
        np.testing.assert_allclose(grid.data.values, ref_grid, rtol=1e-4, atol=2e-5)


def class_patches(real: np.ndarray, size: int = 3, per_class: int = 8) -> dict[str, list[tuple[int, int]]]:
    """Top-left corners of ``size`` px windows of the real sample that are all water (NDWI > -0.1: the stream
    and the pond), all dense vegetation (NDVI > 0.75) or all bare/built ground (NDVI < 0.25, bright), spread
    over the image (the first ``per_class`` of each on a stride of ``size``)."""
    b, g, r, n = real
    ndvi, ndwi = (n - r) / (n + r + 1e-6), (g - n) / (g + n + 1e-6)
    masks = {"water": ndwi > -0.1, "vegetation": ndvi > 0.75, "bare": (ndvi < 0.25) & ((b + g + r) / 3 > 900)}
    out: dict[str, list[tuple[int, int]]] = {}
    for name, mask in masks.items():
        found = [(i, j) for i in range(real.shape[1] - size + 1) for j in range(real.shape[2] - size + 1)
                 if mask[i:i + size, j:j + size].all()]
        picks, taken = [], np.zeros(mask.shape, bool)
        for i, j in found:  # non-overlapping windows
            if not taken[i:i + size, j:j + size].any():
                picks.append((i, j))
                taken[i:i + size, j:j + size] = True
        out[name] = picks[:: max(1, len(picks) // per_class)][:per_class]
    return out


def separation(vectors: dict[str, np.ndarray]) -> tuple[float, float]:
    """(margin, share): margin = min over classes of (the class's patches' mean distance to the nearest other
    class mean) / (their mean distance to their own class mean), above 1 when each class's patches are closer
    to their own mean than to the others'; share = the fraction of patches whose nearest class mean is their own."""
    means = {k: v.mean(axis=0) for k, v in vectors.items()}
    ratios, hits, total = [], 0, 0
    for name, vs in vectors.items():
        own = np.linalg.norm(vs - means[name], axis=1)
        other = np.min([np.linalg.norm(vs - m, axis=1) for k, m in means.items() if k != name], axis=0)
        ratios.append(float(other.mean() / max(float(own.mean()), 1e-12)))
        hits, total = hits + int((own < other).sum()), total + len(vs)
    return min(ratios), hits / total


@needs_weights
def test_real_weights_separate_water_vegetation_and_bare_soil(tmp_path: Path, geo_dir: Path) -> None:
    """3 x 3 px windows of the real 4-band sample, each one region through ``get_embeddings_batch`` (resized to
    64 px; the six bands it lacks are absent, so their groups are masked): with the real weights every
    water, vegetation and bare-soil class's patches are closer to their own class mean than to another class's
    (on average per class; and at least 90% of the patches one by one)."""
    real, transform, crs = sample(geo_dir, 0, 0, 300)
    ten = np.full((10, 300, 300), np.nan, np.float32)
    ten[[0, 1, 2, 6]] = real  # B02 B03 B04 B08 read; B05 B06 B07 B8A B11 B12 absent
    patches = class_patches(real)
    assert all(len(v) >= 4 for v in patches.values()), {k: len(v) for k, v in patches.items()}
    x0, y0 = transform.c, transform.f

    def embed(models: Path, model: str = "galileo") -> dict[str, np.ndarray]:
        eng = geo_engine(tmp_path / models.name / model, model_dir=models)
        out = {}
        for name, corners in patches.items():
            boxes = [BBox(x0 + 10 * j, y0 - 10 * (i + 3), x0 + 10 * (j + 3), y0 - 10 * i, crs=crs) for i, j in corners]
            embs = get_embeddings_batch(model, spatials=boxes, temporal=TemporalSpec.range("2022-07-01", "2022-08-01"),
                                        backend=TensorBackend(ten, transform, crs, bands=G.S2_BANDS), engine=eng,
                                        runtime="torch")
            out[name] = np.stack([e.data for e in embs])
        return out

    real = weights_dir(tmp_path / "real")
    real_margin, raw_margin = separation(embed(real)), separation(embed(real, "galileo_raw"))
    sd = G.read_checkpoint(WEIGHTS)
    g = torch.Generator().manual_seed(0)
    fixed = ("pos_embed", "month_embed.weight")  # sin/cos tables, not learned
    random_sd = {k: v if k in fixed else torch.randn(v.shape, generator=g) * float(v.std() if v.numel() > 1 else 1)
                 for k, v in sd.items()}
    random_margin = separation(embed(weights_dir(tmp_path / "random", random_sd)))
    print(f"patches per class: {({k: len(v) for k, v in patches.items()})}; (margin, share nearest own mean): "
          f"real weights {real_margin} (raw input, galileo_raw: {raw_margin}), random weights {random_margin}")
    assert real_margin[0] > 1.0 and real_margin[1] >= 0.9


@pytest.mark.parametrize("damage", ["missing", "extra", "shape", "pickle"])
def test_refuses_unsafe_or_mismatched_checkpoints(tmp_path: Path, geo_dir: Path, damage: str) -> None:
    """A checkpoint missing a key, holding an extra one, with a wrong shape, or a pickle that runs code is
    refused with model_load_failed naming the problem (no server path in the message); the pickle never runs."""
    net = G.build_encoder_module(dict(G.DEFAULTS, **TINY))
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    folder = tmp_path / "models" / "galileo"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model": {"encoder": TINY}}))
    ran = tmp_path / "pickle-ran"
    if damage == "missing":
        del sd["blocks.0.attn.k.bias"]
    elif damage == "extra":
        sd["blocks.1.attn.k.bias"] = torch.zeros(32)
    elif damage == "shape":
        sd["s_t_channel_embed"] = torch.zeros(6, 8)
    if damage == "pickle":
        class Payload:
            def __reduce__(self) -> Any:
                return (Path.touch, (ran,))

        torch.save({**sd, "norm.weight": Payload()}, folder / "encoder.pt")
    else:
        torch.save(sd, folder / "encoder.pt")
    real, transform, crs = sample(geo_dir, 0, 0, 64)
    eng = geo_engine(tmp_path, model_dir=tmp_path / "models")
    box = BBox(transform.c, transform.f - 640, transform.c + 640, transform.f, crs=crs)
    with pytest.raises(ModelLoadFailed) as info:
        get_embedding("galileo", spatial=box, backend=TensorBackend(ten_bands(real), transform, crs, bands=G.S2_BANDS),
                      engine=eng, runtime="torch")
    expected = {"missing": "missing keys: blocks.0.attn.k.bias", "extra": "unexpected keys: blocks.1.attn.k.bias",
                "shape": "wrong shapes: s_t_channel_embed (6, 8) (expected (7, 8))",
                "pickle": "not a weights-only checkpoint"}[damage]
    assert expected in info.value.message and str(tmp_path) not in info.value.message
    assert info.value.code == "model_load_failed" and not ran.exists()
    # the same folder with the untouched state dict loads and embeds
    torch.save(net.state_dict(), folder / "encoder.pt")
    backend = TensorBackend(ten_bands(real), transform, crs, bands=G.S2_BANDS)
    emb = get_embedding("galileo", spatial=box, backend=backend, runtime="torch",
                        engine=geo_engine(tmp_path / "ok", model_dir=tmp_path / "models"))
    assert emb.data.shape == (32,) and np.isfinite(emb.data).all()


def test_listed_with_weights_missing_naming_the_folder(tmp_path: Path) -> None:
    """geo.list_models() serves galileo; without weights the error names OMNIEMBED_MODEL_DIR/galileo/ and encoder.pt."""
    from omniembed.errors import WeightsNotFound

    assert "galileo" in list_models()
    eng = geo_engine(tmp_path, model_dir=tmp_path / "empty")
    with pytest.raises(WeightsNotFound) as info:
        get_embedding("Galileo", spatial=BBox(0, 0, 640, 640, crs="EPSG:32651"), backend=TensorBackend(
            np.zeros((10, 64, 64), np.float32), (10, 0, 0, 0, -10, 640), "EPSG:32651"), engine=eng)
    assert "OMNIEMBED_MODEL_DIR/galileo/" in info.value.message and "encoder.pt" in (info.value.detail or "")


def test_onnx_runtime_equals_torch_for_any_frame_count(tmp_path: Path, geo_dir: Path) -> None:
    """The exported graph slices the frames at run time: a tiny random galileo (official layout) gives the same
    grid on ONNX and torch for three dated frames and for one composite (eleven filler slots skipped)."""
    save_tiny_galileo(tmp_path / "models")
    eng = geo_engine(tmp_path, model_dir=tmp_path / "models")
    three = galileo_where(geo_dir)
    one = dict(three, sensor=SensorSpec("tensor", composite="median"), temporal=TemporalSpec.range("2022-03-01",
                                                                                                   "2022-08-01"))
    for where in (three, one):
        grids = [get_embedding("galileo", output=OutputSpec.grid(), runtime=rt, engine=eng, **where).data.values
                 for rt in ("onnx", "torch")]
        assert grids[0].shape == (32, 8, 8) and np.abs(grids[0]).max() > 0
        np.testing.assert_allclose(grids[0], grids[1], rtol=1e-4, atol=1e-5)
