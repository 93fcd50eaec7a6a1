"""A read raster described for a person: rs-embed's input report (``inspect_provider_patch``'s ``report``,
``inspect_model_input``'s per-frame ``report``), with its keys and checks: shape and dtype, the finite
fraction, per-band min/max/mean/std, 1st/50th/99th percentiles and a 32-bin histogram, near-constant bands,
values outside ``value_range`` and pixels equal to ``fill_value``; ``ok`` is False with an ``issues`` line
for each problem. Large arrays are sampled on a strided grid (``downsample_stride``)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

__all__ = ["chw_report"]

QUANTILES = (0.01, 0.5, 0.99)
HIST_BINS = 32
FULL_STATS_VALUES = 1_500_000  # above this many values, statistics use a strided sample
HIST_MAX_BANDS = 16


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in values]


def _histogram(x: np.ndarray, lo: float, hi: float, out: dict[str, Any], name: str) -> None:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        out.setdefault("warnings", []).append(f"{name}: no histogram (value range {lo:g}..{hi:g})")
        return
    edges = np.linspace(lo, hi, HIST_BINS + 1, dtype=np.float32)
    counts = []
    for band in x:
        v = band[np.isfinite(band)]
        counts.append([int(c) for c in np.histogram(v, bins=edges)[0]] if v.size else [0] * HIST_BINS)
    out["hist_bins"] = _floats(edges)
    out["band_hist"] = counts
    out["hist_range"] = [lo, hi]
    out["hist"] = {"bins": out["hist_bins"], "counts": counts, "range": out["hist_range"]}


def chw_report(x_chw: Any, *, name: str = "input", expected_channels: int | None = None,
               value_range: tuple[float, float] | None = None, fill_value: float | None = None) -> dict[str, Any]:
    """The report of a (bands, rows, cols) array (see the module)."""
    shape = tuple(int(n) for n in getattr(x_chw, "shape", ()))
    out: dict[str, Any] = {"name": name, "ok": True, "issues": [], "shape": shape,
                           "dtype": str(getattr(x_chw, "dtype", None))}

    def issue(text: str) -> None:
        out["ok"] = False
        out["issues"].append(f"{name}: {text}")

    if not isinstance(x_chw, np.ndarray) or x_chw.ndim != 3:
        issue(f"expected a (bands, rows, cols) array, got {'ndim=' + str(len(shape)) if shape else type(x_chw)}")
        return out
    c, h, w = shape
    if expected_channels is not None and c != int(expected_channels):
        issue(f"channel mismatch (C={c}, expected {expected_channels})")
    if h <= 0 or w <= 0:
        issue(f"empty raster ({h} x {w} pixels)")
        return out
    x = x_chw
    if c * h * w > FULL_STATS_VALUES:
        stride = max(1, math.ceil(math.sqrt(c * h * w / FULL_STATS_VALUES)))
        x = x_chw[:, ::stride, ::stride]
        out["downsample_stride"] = stride
    x = np.where(np.isfinite(x), x, np.nan).astype(np.float32, copy=False)
    finite = np.isfinite(x)
    out["finite_frac"] = float(finite.mean())
    if out["finite_frac"] < 0.999:
        issue(f"contains NaN/Inf ({int((~finite).sum())} of {finite.size} sampled values)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN band has no statistics
        bmin, bmax = np.nanmin(x, axis=(1, 2)), np.nanmax(x, axis=(1, 2))
        bstd = np.nanstd(x, axis=(1, 2))
        out["band_min"], out["band_max"] = _floats(bmin), _floats(bmax)
        out["band_mean"], out["band_std"] = _floats(np.nanmean(x, axis=(1, 2))), _floats(bstd)
        q = np.nanquantile(x, QUANTILES, axis=(1, 2))  # (quantiles, bands)
    keys = [f"p{round(p * 100):02d}" for p in QUANTILES]
    out["band_quantiles"] = {k: _floats(q[i]) for i, k in enumerate(keys)}
    out.update({f"band_{k}": _floats(q[i]) for i, k in enumerate(keys)})
    out["quantiles"] = list(QUANTILES)
    if c <= HIST_MAX_BANDS:
        lo, hi = value_range if value_range is not None else (np.nanmin(q[0]), np.nanmax(q[-1]))
        _histogram(x, float(lo), float(hi), out, name)
    constant = [i for i, s in enumerate(bstd) if not s >= 1e-6]
    if constant:
        issue(f"near-constant bands at indices {constant}")
    if value_range is not None:
        lo, hi = float(value_range[0]), float(value_range[1])
        outside = float(((x < lo) | (x > hi)).mean())  # of every sampled value (NaN is not outside)
        out["outside_range_frac"] = outside
        if outside > 0.001:
            issue(f"values outside range [{lo:g}, {hi:g}] ({outside:.4f} of the sampled values)")
    if fill_value is not None:
        fv = float(fill_value)
        fill = float((x == fv).mean())
        out["fill_value"], out["fill_frac"] = fv, fill
        if fill > 0.98:
            issue(f"almost all values equal fill_value={fv:g} ({fill:.4f} of the sampled values)")
    return out
