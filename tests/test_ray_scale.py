"""omniembed on a real 2-node Ray cluster (tests/ray_cluster.py: a head and a worker node, 1 CPU each), started
once for this module: ``embed_dataset`` and ``omniembed embed --engine ray`` give the vectors of an in-process
``embed_batch`` with every row id once; bad rows become error rows; a killed worker actor and a killed driver
lose and duplicate nothing; a geo export on the cluster writes the files of a local one."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

pytest.importorskip("ray")

import ray

from audio_data import noise, tone
from conftest import LoopbackServer, cosines
from corpus import SENTENCES
from image_data import PHOTOS, photo, png_bytes, truncated_png
from omniembed.api import Engine
from omniembed.cli import app
from omniembed.ray import RayEngine, embed_dataset
from omniembed.settings import Settings
from ray_cluster import cluster_fixture  # noqa: F401  (the ray_cluster fixture)

pytestmark = pytest.mark.slow
runner = CliRunner()


def mixed_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` texts from one word to several sentences (the corpus's real sentences, joined)."""
    rng = random.Random(seed)
    return [" ".join(rng.sample(SENTENCES, rng.choice((1, 1, 2, 3, 5)))) for _ in range(n)]


def blocks(table: pa.Table, rows: int) -> Any:
    """A dataset of several blocks, so that both actors get work."""
    return ray.data.from_arrow([table.slice(s, rows) for s in range(0, table.num_rows, rows)])


def collect(ds: Any, schemas: list[pa.Schema] | None = None) -> dict[str, dict[str, Any]]:
    """Rows by id (and each output block's schema into ``schemas``); fails on a duplicated id."""
    out: dict[str, dict[str, Any]] = {}
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        if schemas is not None:
            schemas.append(batch.schema)
        for row in batch.to_pylist():
            assert row["id"] not in out, f"row {row['id']} came back twice"
            out[row["id"]] = row
    return out


def check_against(reference: list[Any], ids: list[str], rows: dict[str, dict[str, Any]]) -> None:
    """Every id once; good rows at cosine >= 0.99999 of the in-process vector; bad rows with its error code."""
    assert sorted(rows) == sorted(ids)
    good = [(i, r) for i, r in zip(ids, reference, strict=True) if not isinstance(r, Exception)]
    for i, r in zip(ids, reference, strict=True):
        if isinstance(r, Exception):
            assert rows[i]["embedding"] is None and rows[i]["error"]["code"] == r.code, (i, rows[i]["error"])
        else:
            assert rows[i]["error"] is None, (i, rows[i]["error"])
    got = np.array([rows[i]["embedding"] for i, _ in good], np.float32)
    want = np.stack([r.vector for _, r in good])
    assert cosines(got, want).min() >= 0.99999


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [*mixed_texts(300), "", "   "]


@pytest.fixture(scope="module")
def text_reference(engine: Engine, texts: list[str]) -> list[Any]:
    """The in-process ``embed_batch`` of ``texts``: the reference, run here."""
    return engine.embed_batch("minilm", texts, errors="return")


def test_texts_on_two_nodes_equal_in_process(ray_cluster: Any, settings: Settings, texts: list[str],
                                            text_reference: list[Any]) -> None:
    ids = [f"t{k}" for k in range(len(texts))]
    reference = text_reference
    table = pa.table({"id": ids, "text": texts})
    schemas: list[pa.Schema] = []
    rows = collect(embed_dataset(blocks(table, 38), "minilm", settings=settings, concurrency=2, batch_size=32),
                   schemas)
    check_against(reference, ids, rows)
    assert {rows["t300"]["error"]["code"], rows["t301"]["error"]["code"]} == {"parameter_invalid"}
    assert {str(s.field("embedding").type) for s in schemas} == {"fixed_size_list<item: float>[384]"}
    assert {str(s.field("error").type) for s in schemas} == {
        "struct<code: string, message: string, param: string, index: int64, model: string, hint: string, "
        "detail: string, incident: string>"}  # the code, the message and every field of the error
    assert rows["t300"]["error"]["param"] == "text"  # the fields travel with the row (the index is the engine
    # call's, not the dataset's, so the row carries none)
    assert {tuple(s.names) for s in schemas} == {("id", "text", "embedding", "error")}


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 images: five photos at eight crops and sizes, PNG and JPEG."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("ray_images")
    for name in PHOTOS:
        full = photo(name)
        for k in range(8):
            h, w = full.shape[:2]
            crop = full[k * h // 32: h - k * h // 40, k * w // 40: w - k * w // 32]
            img = Image.fromarray(crop).resize((96 + 16 * k, 80 + 12 * k))
            img.save(folder / f"{name}-{k}.{'png' if k % 2 else 'jpg'}")
    return folder


def test_images_paths_urls_and_bytes_with_bad_rows(ray_cluster: Any, engine: Engine, settings: Settings,
                                                   image_dir: Path, http_server: LoopbackServer) -> None:
    http_server.routes["/cat.png"] = (200, {"Content-Type": "image/png"}, png_bytes(photo("chelsea")[:64, :64]))
    broken = image_dir.parent / "broken.png"
    broken.write_bytes(truncated_png())
    paths = [str(p) for p in sorted(image_dir.iterdir())]
    assert len(paths) == 40
    inputs = [*paths, str(broken), http_server.url("/cat.png")]
    ids = [f"i{k}" for k in range(len(inputs))]
    reference = engine.embed_batch("efficientnet-lite0", images=inputs, errors="return")
    assert [getattr(r, "code", None) for r in reference[-2:]] == ["input_unreadable", "parameter_invalid"]
    out = embed_dataset(blocks(pa.table({"id": ids, "image": inputs}), 11), "efficientnet-lite0", column="image",
                        settings=settings, concurrency=1, batch_size=8)
    check_against(reference, ids, collect(out))
    assert http_server.hits == []  # the guarded fetcher refused the loopback address before connecting

    raw = [png_bytes(photo(name)[::3, ::3]) for name in PHOTOS] + [truncated_png(), b"not an image"]
    raw_ids = [f"b{k}" for k in range(len(raw))]
    reference = engine.embed_batch("efficientnet-lite0", images=raw, errors="return")
    table = pa.table({"id": raw_ids, "image": pa.array(raw, pa.binary())})
    rows = collect(embed_dataset(blocks(table, 4), "efficientnet-lite0", column="image", settings=settings,
                                 concurrency=1, batch_size=4))
    check_against(reference, raw_ids, rows)
    assert "image" not in rows["b0"]  # the bytes are not carried to the output


def test_audio_pooled_and_segments(ray_cluster: Any, engine: Engine, settings: Settings, tmp_path: Path) -> None:
    import soundfile as sf

    clips = []
    for k, samples in enumerate((tone(3.0, 22050, 440.0), noise(5.0, 22050), tone(1.0, 22050, 880.0))):
        path = tmp_path / f"clip{k}.wav"
        sf.write(path, samples, 22050)
        clips.append(str(path))
    (tmp_path / "empty.wav").write_bytes(b"")
    clips.append(str(tmp_path / "empty.wav"))
    ids = [f"a{k}" for k in range(len(clips))]
    reference = engine.embed_batch("sfx-cnn", audios=clips, errors="return")
    out = embed_dataset(blocks(pa.table({"id": ids, "audio": clips}), 2), "sfx-cnn", column="audio",
                        settings=settings, segments=True, batch_size=2)
    rows = collect(out)
    check_against(reference, ids, rows)
    for i, r in zip(ids[:3], reference[:3], strict=True):
        segs = rows[i]["segments"]
        assert len(segs) == len(r.meta.segments) == r.data.shape[0]
        np.testing.assert_allclose(np.array([s["embedding"] for s in segs]), r.data, rtol=1e-4, atol=1e-5)
        assert [s["start_sec"] for s in segs] == [s.start_sec for s in r.meta.segments]


def _embedder_pids() -> list[int]:
    """The processes of the live encoder actors (from the cluster's actor table; the state API needs the
    dashboard, which this cluster runs without)."""
    from ray._private import state

    actors = state.actors().values()
    return [a["Pid"] for a in actors if "Embedder" in a["ActorClassName"] and a["State"] == "ALIVE" and a["Pid"]]


def test_a_killed_worker_actor_loses_and_duplicates_nothing(ray_cluster: Any, settings: Settings) -> None:
    texts = mixed_texts(400, seed=1)
    ids = [f"k{k}" for k in range(len(texts))]
    out = embed_dataset(blocks(pa.table({"id": ids, "text": texts}), 8), "minilm", settings=settings,
                        concurrency=2, batch_size=8)
    seen: list[str] = []
    after_kill, killed = 0, None
    for batch in out.iter_batches(batch_format="pyarrow", batch_size=None):
        seen += batch.column("id").to_pylist()
        if killed is None:
            pids = _embedder_pids()
            if pids:
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)
        else:
            after_kill += batch.num_rows
    assert killed is not None and after_kill > 0  # the kill happened mid-job
    assert sorted(seen) == sorted(ids)  # every row exactly once


# -- the CLI ----------------------------------------------------------------------------------------
def read_shards(folder: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for part in sorted(folder.glob("part-*.parquet")):
        for row in pq.read_table(part).to_pylist():
            assert row["id"] not in rows, f"row {row['id']} written twice"
            rows[row["id"]] = row
    return rows


def embed_cli(args: list[str]) -> Any:
    result = runner.invoke(app, ["embed", *args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> Path:
    path = tmp_path_factory.mktemp("ray_corpus") / "corpus.parquet"
    pq.write_table(pa.table({"id": [f"r{k}" for k in range(len(texts))], "text": texts}), path)
    return path


def test_cli_ray_writes_the_shards_of_the_in_process_run(ray_cluster: Any, text_reference: list[Any],
                                                          corpus_file: Path, texts: list[str], image_dir: Path,
                                                          tmp_path: Path) -> None:
    ids = [f"r{k}" for k in range(len(texts))]
    reference = text_reference
    common = ["--input", str(corpus_file), "--column", "text", "--shard-rows", "64"]
    embed_cli(["minilm", *common, "--out", str(tmp_path / "local")])
    embed_cli(["minilm", *common, "--out", str(tmp_path / "ray"), "--engine", "ray", "--address",
               ray_cluster.address, "--concurrency", "2"])
    local, remote = read_shards(tmp_path / "local"), read_shards(tmp_path / "ray")
    check_against(reference, ids, local)
    check_against(reference, ids, remote)
    for name in ("local", "ray"):
        manifest = json.loads((tmp_path / name / "_manifest.json").read_text())
        assert manifest["complete"] and manifest["counts"] == {"rows": 302, "embedded": 300, "errors": 2}
        assert sorted(manifest["shards"]) == [f"part-{k:05d}.parquet" for k in range(5)]
        # same files: the same ids, in the same order, in each shard
        assert [pq.read_table(tmp_path / name / s).column("id").to_pylist() for s in sorted(manifest["shards"])] \
            == [ids[k:k + 64] for k in range(0, 302, 64)]

    embed_cli(["efficientnet-lite0", "--input", str(image_dir), "--out", str(tmp_path / "img_local")])
    embed_cli(["efficientnet-lite0", "--input", str(image_dir), "--out", str(tmp_path / "img_ray"), "--engine",
               "ray", "--address", ray_cluster.address, "--concurrency", "1"])
    a, b = read_shards(tmp_path / "img_local"), read_shards(tmp_path / "img_ray")
    assert sorted(a) == sorted(b) and len(a) == 40
    got = np.array([b[i]["embedding"] for i in sorted(a)], np.float32)
    assert cosines(got, np.array([a[i]["embedding"] for i in sorted(a)], np.float32)).min() >= 0.99999


def test_cli_driver_killed_then_resumed_writes_every_row_once(ray_cluster: Any, engine: Engine, tmp_path: Path) -> None:
    texts = mixed_texts(600, seed=2)
    ids = [f"d{k}" for k in range(len(texts))]
    corpus = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"id": ids, "text": texts}), corpus)
    out = tmp_path / "out"
    args = ["embed", "minilm", "--input", str(corpus), "--out", str(out), "--engine", "ray", "--address",
            ray_cluster.address, "--concurrency", "1", "--shard-rows", "20", "--batch-size", "8"]
    proc = subprocess.Popen([sys.executable, "-m", "omniembed.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("part-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before any shard was written: " + proc.stderr.read().decode()[-800:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    done = json.loads((out / "_manifest.json").read_text())
    assert not done["complete"] and 0 < len(done["shards"]) < 30
    result = embed_cli(args[1:])
    assert "resuming:" in result.output
    rows = read_shards(out)
    assert sorted(rows) == sorted(ids)  # every row exactly once
    sample = [0, 1, len(ids) // 2, len(ids) - 1]
    want = np.stack([e.vector for e in engine.embed_batch("minilm", [texts[k] for k in sample])])
    got = np.array([rows[ids[k]]["embedding"] for k in sample], np.float32)
    assert cosines(got, want).min() >= 0.99999
    final = json.loads((out / "_manifest.json").read_text())
    assert final["complete"] and final["counts"]["rows"] == 600 and len(final["shards"]) == 30


# -- geo --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def geo_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Engine]]:
    from geo_data import CONV_SPEC, geo_engine, shared_geo_dir

    yield shared_geo_dir(tmp_path_factory), geo_engine(tmp_path_factory.mktemp("ray_geo_engine"), CONV_SPEC)


def test_geo_export_on_the_cluster_equals_the_local_export(ray_cluster: Any, geo_setup: tuple[Path, Engine],
                                                           tmp_path: Path) -> None:
    from geo_data import folder_export
    from omniembed.geo import PointBuffer, TemporalSpec

    geo_dir, eng = geo_setup
    summer = TemporalSpec.range("2022-06-01", "2022-09-01")
    rois = [PointBuffer(121.5 + 0.003 * (k % 4), 31.195 + 0.003 * (k // 4), 200 + 30 * k) for k in range(11)]
    rois.append(PointBuffer(0.0, 0.0, 100))  # no imagery there: an error item in both
    backend = f"local:{geo_dir / 's2'}"
    local = folder_export(rois, summer, "test-conv-geo", tmp_path / "local", "npz", backend=backend, engine=eng,
                          chunk_size=6)
    remote = folder_export(rois, summer, "test-conv-geo", tmp_path / "ray", "npz", backend=backend,
                           engine=RayEngine.from_engine(eng), chunk_size=6)
    assert local["counts"] == {"total": 12, "done": 11, "error": 1}
    assert json.loads((tmp_path / "ray" / "manifest.json").read_text()) == \
        json.loads((tmp_path / "local" / "manifest.json").read_text()) == remote
    names = {k: sorted(p.name for p in (tmp_path / k).iterdir()) for k in ("local", "ray")}
    assert names["ray"] == names["local"]
    with np.load(tmp_path / "local" / "embeddings.npz") as a, np.load(tmp_path / "ray" / "embeddings.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            if a[key].dtype.kind == "f":
                np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-7)
            else:
                assert (a[key] == b[key]).all()
    # resume: a second run on the cluster embeds nothing again and writes the same manifest
    again = folder_export(rois, summer, "test-conv-geo", tmp_path / "ray", "npz", backend=backend,
                          engine=RayEngine.from_engine(eng), chunk_size=6)
    assert again == remote
    runs = (tmp_path / "ray" / ".items" / "runs.jsonl").read_text().splitlines()
    assert len(runs) == 11  # each item embedded once, by the first run


def test_geo_cli_export_engine_ray_writes_the_local_files(ray_cluster: Any, geo_setup: tuple[Path, Engine],
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import omniembed.geo.export
    from omniembed.cli.geo import app as geo_app

    made: list[Any] = []
    original = omniembed.geo.export.chunk_embedder
    monkeypatch.setattr(omniembed.geo.export, "chunk_embedder", lambda engine: made.append(engine) or original(engine))

    geo_dir = geo_setup[0]
    rois = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": f"p{k}", "properties": {"buffer_m": 300 + 50 * k},
         "geometry": {"type": "Point", "coordinates": [121.495 + 0.002 * k, 31.195 + 0.001 * k]}} for k in range(4)]}
    (tmp_path / "rois.geojson").write_text(json.dumps(rois))
    outputs = {}
    for kind in ("local", "ray"):
        args = ["export", str(tmp_path / "rois.geojson"), "-m", "gse", "-o", str(tmp_path / kind), "--format",
                "geoparquet", "--backend", "local", "--source", str(geo_dir / "gse"), "--start", "2022-01-01",
                "--end", "2023-01-01", "--engine", kind]
        res = runner.invoke(geo_app, [*args, *(["--address", ray_cluster.address] if kind == "ray" else [])])
        assert res.exit_code == 0, res.output
        outputs[kind] = json.loads(res.stdout)
        assert outputs[kind]["counts"] == {"total": 4, "done": 4, "error": 0}
        assert len(made) == (kind == "ray")  # only --engine ray fans out to the cluster
    assert json.loads((tmp_path / "ray" / "manifest.json").read_text()) == \
        json.loads((tmp_path / "local" / "manifest.json").read_text())
    a, b = (pq.read_table(tmp_path / k / "embeddings.parquet") for k in ("local", "ray"))
    assert a.column("id").to_pylist() == b.column("id").to_pylist() == ["p0", "p1", "p2", "p3"]
    np.testing.assert_allclose(np.array(b.column("embedding").to_pylist()), np.array(a.column("embedding").to_pylist()),
                               rtol=1e-6, atol=1e-7)


def test_cli_refuses_to_mix_runs_in_one_folder(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    (tmp_path / "b.txt").write_text("three\n")
    embed_cli(["minilm", "--input", str(tmp_path / "a.txt"), "--out", str(tmp_path / "out")])
    assert [r["id"] for r in read_shards(tmp_path / "out").values()] == ["1", "2"]
    other = runner.invoke(app, ["embed", "minilm", "--input", str(tmp_path / "b.txt"), "--out", str(tmp_path / "out")])
    assert other.exit_code == 2 and "holds another run" in other.stderr and "new --out" in other.stderr
    bad = runner.invoke(app, ["embed", "minilm", "--input", str(tmp_path / "a.txt"), "--out", str(tmp_path / "o2"),
                              "--engine", "spark"])
    assert bad.exit_code == 2 and "--engine must be local or ray" in bad.stderr


def test_geo_per_item_export_on_the_cluster_saves_the_inputs_it_read(ray_cluster: Any, geo_setup: tuple[Path, Engine],
                                                                     tmp_path: Path) -> None:
    """rs-embed's per-item layout with ``save_inputs=True`` on the cluster: each worker hands back the raster it
    read with the embedding (no second read on the driver), and the files equal a local export's."""
    from omniembed.geo import ExportConfig, ExportTarget, PointBuffer, TemporalSpec, export_batch

    geo_dir, eng = geo_setup
    rois = [PointBuffer(121.5 + 0.003 * k, 31.2, 300) for k in range(3)]
    kw: dict[str, Any] = {"spatials": rois, "temporal": TemporalSpec.range("2022-06-01", "2022-09-01"),
                          "models": ["test-conv-geo"], "backend": f"local:{geo_dir / 's2'}",
                          "config": ExportConfig(save_inputs=True, show_progress=False, chunk_size=3)}
    export_batch(target=ExportTarget.per_item(str(tmp_path / "local")), engine=eng, **kw)
    export_batch(target=ExportTarget.per_item(str(tmp_path / "ray")), engine=RayEngine.from_engine(eng), **kw)
    for k in range(3):
        with np.load(tmp_path / "local" / f"p{k:05d}.npz") as a, np.load(tmp_path / "ray" / f"p{k:05d}.npz") as b:
            np.testing.assert_array_equal(b["input_chw__test_conv_geo"], a["input_chw__test_conv_geo"])
            np.testing.assert_allclose(b["embedding__test_conv_geo"], a["embedding__test_conv_geo"], rtol=1e-6)
        entry = json.loads((tmp_path / "ray" / f"p{k:05d}.json").read_text())["models"][0]
        assert entry["status"] == "ok" and entry["input"]["npz_key"] == "input_chw__test_conv_geo"
