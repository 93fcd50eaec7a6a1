"""The CLI as a new user meets it: --out into new folders, --out for one input, a busy port for serve,
skipped items named by their line or file (from the error's index, never from message text), and a cold
start that says what it is doing without the exporters' chatter."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from PIL import Image
from typer.testing import CliRunner

import omniembed
from audio_data import tone
from omniembed.cli import app
from omniembed.embedding import Modality
from service_util import Server

runner = CliRunner()


def no_traceback(result: object) -> None:
    output = getattr(result, "output", "")
    assert "Traceback" not in output, output
    exception = getattr(result, "exception", None)
    assert exception is None or isinstance(exception, SystemExit), repr(exception)


# -- --out --------------------------------------------------------------------------------------------
def test_out_into_a_folder_that_does_not_exist_is_created(tmp_path: Path) -> None:
    src = tmp_path / "texts.txt"
    src.write_text("first\nsecond\n", encoding="utf-8")
    out = tmp_path / "new" / "deeper" / "v.parquet"
    result = runner.invoke(app, ["embed", "minilm", "--input", str(src), "--out", str(out), "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    no_traceback(result)
    assert pq.read_table(out).column("id").to_pylist() == ["1", "2"]


def test_out_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "texts.txt"
    src.write_text("first\n", encoding="utf-8")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for args in (["--input", str(src)], ["--text", "a"]):
        result = runner.invoke(app, ["embed", "minilm", *args, "--out", str(blocker / "v.parquet")])
        assert result.exit_code == 2, result.output
        no_traceback(result)
        assert "error [parameter_invalid] cannot create the folder" in result.stderr and "--out" in result.stderr
    result = runner.invoke(app, ["embed", "minilm", "--text", "a", "--out", str(tmp_path)])
    assert result.exit_code == 2 and ".parquet" in result.stderr


def test_one_text_with_out_writes_the_file_the_input_path_writes(tmp_path: Path, engine: omniembed.Engine) -> None:
    out = tmp_path / "new" / "v.parquet"
    result = runner.invoke(app, ["embed", "minilm", "--text", "a cat", "--out", str(out), "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and f"wrote 1 embedding to {out}" in result.stderr
    table = pq.read_table(out)
    src = tmp_path / "one.txt"
    src.write_text("a cat\n", encoding="utf-8")
    from_file = tmp_path / "from-file.parquet"
    written = runner.invoke(app, ["embed", "minilm", "-i", str(src), "-o", str(from_file), "--runtime", "torch"])
    assert written.exit_code == 0, written.output
    assert table.schema == pq.read_table(from_file).schema  # same columns, types and metadata
    row = table.to_pylist()
    assert [(r["id"], r["text"], r["truncated"]) for r in row] == [("1", "a cat", False)]
    expected = omniembed.embed("minilm", text="a cat", runtime="torch").data
    np.testing.assert_allclose(np.asarray(row[0]["embedding"], np.float32), expected, atol=2e-5)
    assert json.loads(table.schema.metadata[b"omniembed"])["model"] == "minilm"


def test_one_image_and_one_audio_with_out(tmp_path: Path, engine: omniembed.Engine) -> None:
    image = tmp_path / "cat.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "img" / "v.parquet"
    result = runner.invoke(app, ["embed", "efficientnet-lite0", "--image", str(image), "-o", str(out),
                                 "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.column_names == ["path", "pixels", "embedding"]  # the image folder's format
    assert table.column("path").to_pylist() == [str(image)]
    expected = engine.embed("efficientnet-lite0", image=str(image), runtime="torch").data
    np.testing.assert_allclose(np.asarray(table.column("embedding").to_pylist()[0]), expected, atol=1e-4)

    clip = tmp_path / "tone.wav"
    sf.write(clip, tone(4.0, 16000, 300.0), 16000)
    out = tmp_path / "audio" / "v.parquet"
    result = runner.invoke(app, ["embed", "speaker-ge2e", "--audio", str(clip), "--segment-sec", "2", "-o", str(out),
                                 "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 embeddings" in result.stderr
    table = pq.read_table(out)
    expected_audio = engine.embed("speaker-ge2e", audio=str(clip), segment_sec=2.0, runtime="torch")
    assert table.column("start_sec").to_pylist() == [0.0, 2.0] and table.column("end_sec").to_pylist() == [2.0, 4.0]
    np.testing.assert_allclose(np.asarray(table.column("embedding").to_pylist()), expected_audio.data, atol=1e-4)
    pooled = json.loads(table.schema.metadata[b"omniembed"])["pooled"]
    np.testing.assert_allclose(pooled, expected_audio.vector, atol=1e-4)


# -- positions ----------------------------------------------------------------------------------------
def test_skipped_lines_are_named_by_line_from_the_error_index(tmp_path: Path) -> None:
    src = tmp_path / "texts.txt"
    src.write_text("fine\n\n" + "word " * 400 + "\nalso fine\n", encoding="utf-8")
    out = tmp_path / "v.parquet"
    result = runner.invoke(app, ["embed", "minilm", "-i", str(src), "-o", str(out), "--truncate", "none",
                                 "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    assert re.search(r"skipped line 3: \[\w+\] the text is 40\d tokens long", result.stderr), result.stderr
    assert not re.search(r"item \d+", result.stderr)  # no position from inside the engine's batches
    assert pq.read_table(out).column("id").to_pylist() == ["1", "4"]


def test_skipped_images_are_named_by_file(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("a.png", "sub/c.png"):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / name)
    (folder / "sub" / "b.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "v.parquet"
    result = runner.invoke(app, ["embed", "efficientnet-lite0", "-i", str(folder), "-o", str(out),
                                 "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    assert re.search(r"skipped sub/b\.jpg: \[input_unreadable\] ", result.stderr), result.stderr
    assert not re.search(r"item \d+", result.stderr)
    assert pq.read_table(out).column("path").to_pylist() == ["a.png", "sub/c.png"]


# -- serve --------------------------------------------------------------------------------------------
@pytest.fixture()
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_serve_on_a_busy_port_is_a_clear_error_before_the_banner(busy_port: int) -> None:
    result = runner.invoke(app, ["serve", "--host", "127.0.0.1", "--port", str(busy_port)])
    assert result.exit_code == 2, result.output
    no_traceback(result)
    expected = f"error [parameter_invalid] port {busy_port} on 127.0.0.1 is in use; pick another with --port"
    assert expected in result.stderr
    assert "serving on" not in result.output


def test_serve_process_on_a_busy_port_exits_without_traceback(busy_port: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "omniembed.cli", "serve", "--port", str(busy_port)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "is in use; pick another with --port" in proc.stderr
    assert "Traceback" not in proc.stderr and "serving on" not in proc.stderr and "Errno" not in proc.stderr


def test_serve_listens_on_the_socket_it_checked(tmp_path: Path, cache_dir: Path) -> None:
    """A real server on the pre-bound socket answers; a second one on its port is refused clearly."""
    import httpx

    server = Server(tmp_path / "data", cache_dir).start()
    try:
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
        second = subprocess.run(
            [sys.executable, "-m", "omniembed.cli", "serve", "--host", "127.0.0.1", "--port", str(server.port)],
            capture_output=True, text=True, timeout=120, env=server.env,
        )
        assert second.returncode == 2 and f"port {server.port} on 127.0.0.1 is in use" in second.stderr
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
    finally:
        assert server.stop() in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown


def test_bad_port_and_host_are_parameter_errors() -> None:
    result = runner.invoke(app, ["serve", "--port", "70000"])
    assert result.exit_code == 2 and "port must be between 0 (any free port) and 65535" in result.stderr
    result = runner.invoke(app, ["serve", "--host", "203.0.113.7", "--port", "8123"])  # not an address of ours
    assert result.exit_code == 2 and "cannot listen on 203.0.113.7:8123" in result.stderr
    no_traceback(result)


# -- cold start ---------------------------------------------------------------------------------------
def test_prepare_shows_one_progress_line_pair_and_no_exporter_chatter(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"OMNIEMBED_CACHE_DIR": str(tmp_path)}
    with caplog.at_level(logging.INFO):
        result = runner.invoke(app, ["models", "prepare", "sfx-cnn", "--runtime", "onnx"], env=env)
    assert result.exit_code == 0, result.output
    # torch's own warnings may also appear on stderr; ours are exactly these three lines
    lines = [line for line in result.stderr.splitlines() if line.startswith(("preparing", "sfx-cnn"))]
    assert lines[0].startswith("preparing sfx-cnn: exporting to ONNX (once; cached in"), lines
    assert re.fullmatch(r"preparing sfx-cnn: done in \d+\.\d s", lines[1]), lines
    assert lines[2].startswith("sfx-cnn: ready in") and len(lines) == 3, lines
    exporters = [r for r in caplog.records if r.name.startswith(("onnxscript", "onnx_ir", "torch.onnx"))]
    assert [r for r in exporters if r.levelno < logging.WARNING] == [], [f"{r.name}: {r.msg}"[:100] for r in exporters]
    # warm: nothing to prepare, one line
    again = runner.invoke(app, ["models", "prepare", "sfx-cnn", "--runtime", "onnx"], env=env)
    assert next(line for line in again.stderr.splitlines() if "sfx-cnn" in line).startswith("sfx-cnn: ready in")


# -- issue 24: what the CLI's errors ask is something the CLI can do ----------------------------------
def test_unknown_model_hint_suggests_what_runs_here_of_the_inputs_kind(engine: omniembed.Engine) -> None:
    ready = {s.name: engine.weights_available(s) for s in engine.registry}
    audio_here = sorted(n for n in ready if ready[n] and Modality.AUDIO in engine.registry.resolve(n).modalities)
    result = runner.invoke(app, ["embed", "clap2", "--audio", "talk.wav"])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip().splitlines()[0]
    assert line.startswith("error [model_not_found] no model named 'clap2'. Did you mean 'clap'?"), line
    if ready["clap"]:  # clap can run here: suggested as it is
        assert "weights are not here" not in line
    else:  # clap cannot: how to get it, and the audio models that do run here
        assert "Its weights are not here: `omniembed models prepare clap` downloads them (needs the network)." in line
        assert f"Models that embed audio with weights here: {', '.join(map(repr, audio_here))}." in line
    # a text input is never answered with a model that does not embed text
    result = runner.invoke(app, ["embed", "speakr", "--text", "hello"])
    assert "'speaker-ge2e'" not in result.stderr and "Models that embed text" in result.stderr


def test_a_video_under_an_audio_model_embeds_its_sound_and_the_flag_is_named(
    tmp_path_factory: pytest.TempPathFactory, engine: omniembed.Engine
) -> None:
    from video_data import VideoFiles

    clip = VideoFiles.for_session(tmp_path_factory).halves()  # 12 s: two photos, two spoken sentences
    result = runner.invoke(app, ["embed", "sfx-cnn", "--video", str(clip), "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    expected = engine.embed("sfx-cnn", video=str(clip), embedding_option="audio", runtime="torch")
    np.testing.assert_allclose(np.asarray(shown["embedding"]), expected.data, atol=1e-4)
    assert shown["meta"]["extra"]["embedding_option"] == "audio"
    explicit = runner.invoke(app, ["embed", "sfx-cnn", "--video", str(clip), "--embedding-option", "audio",
                                   "--runtime", "torch"])
    assert explicit.exit_code == 0 and json.loads(explicit.stdout)["embedding"] == shown["embedding"]
    wrong = runner.invoke(app, ["embed", "sfx-cnn", "--video", str(clip), "--embedding-option", "visual"])
    assert wrong.exit_code == 2
    assert wrong.stderr.strip() == (
        "error [parameter_invalid] model 'sfx-cnn' does not embed images, which --embedding-option visual needs; it "
        "embeds audio: use --embedding-option audio (or leave the option out) to embed the video's sound")
    assert "embedding_option=" not in wrong.stderr
    helped = runner.invoke(app, ["embed", "--help"], env={"COLUMNS": "200"})
    assert "--video" in helped.stdout and "--embedding-option" in helped.stdout
    listed = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout.splitlines()  # the command list
    assert any("embed" in line and "--video" in line for line in listed), listed
    # a folder of videos under the same model: the same clip vectors, one file's rows
    folder = tmp_path_factory.mktemp("sound-videos")
    (folder / "talk.mp4").write_bytes(clip.read_bytes())
    out = folder.parent / f"{folder.name}.parquet"
    many = runner.invoke(app, ["embed", "sfx-cnn", "--input", str(folder), "--out", str(out), "--runtime", "torch"])
    assert many.exit_code == 0, many.output
    table = pq.read_table(out).to_pydict()
    assert table["scope"] == ["clip"] * len(expected.meta.segments) + ["video"]
    np.testing.assert_allclose(np.asarray(table["embedding"][:-1]), expected.data, atol=1e-4)


def test_a_folder_of_wavs_is_embedded_as_audio(tmp_path: Path, engine: omniembed.Engine) -> None:
    from audio_data import have_espeak

    if not have_espeak():
        pytest.skip("espeak-ng is not installed")
    folder = tmp_path / "talks"
    (folder / "more").mkdir(parents=True)
    subprocess.run(["espeak-ng", "-w", str(folder / "hello.wav"), "hello there, this is a test of speech"],
                   check=True)
    sf.write(folder / "more" / "tone.flac", tone(3.0, 16000, 300.0), 16000)
    (folder / "notes.txt").write_text("not audio")
    out = tmp_path / "talks.parquet"
    result = runner.invoke(app, ["embed", "speaker-ge2e", "--input", str(folder), "--out", str(out),
                                 "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out).to_pydict()
    for name in ("hello.wav", "more/tone.flac"):
        expected = engine.embed("speaker-ge2e", audio=str(folder / name), runtime="torch")
        rows = [i for i, p in enumerate(table["path"]) if p == name]
        assert [table["scope"][i] for i in rows] == ["segment"] * len(expected.meta.segments) + ["audio"]
        assert [table["start_sec"][i] for i in rows[:-1]] == [s.start_sec for s in expected.meta.segments]
        np.testing.assert_allclose(np.asarray([table["embedding"][i] for i in rows[:-1]]), expected.data, atol=1e-4)
        np.testing.assert_allclose(table["embedding"][rows[-1]], expected.vector, atol=1e-4)
    segments = len(table["path"]) - 2
    assert (f"wrote {segments} segment and 2 file embeddings to {out}; 0 unreadable files skipped; 1 other files "
            "ignored") in result.stderr
    # an image model on the same folder says what it looked for, not "no image files" alone
    images = runner.invoke(app, ["embed", "efficientnet-lite0", "--input", str(folder), "--out", str(out)])
    assert images.exit_code == 2 and "holds no image files" in images.stderr and "or videos" in images.stderr


def test_a_missing_file_is_exit_2_with_every_flag(tmp_path: Path) -> None:
    out = str(tmp_path / "o.parquet")
    for flag, model, name in (("--image", "efficientnet-lite0", "nope.png"), ("--audio", "sfx-cnn", "nope.wav"),
                              ("--video", "efficientnet-lite0", "nope.mp4"), ("--input", "minilm", "nope.txt"),
                              ("--input", "efficientnet-lite0", "no-such-folder")):
        missing = str(tmp_path / name)
        result = runner.invoke(app, ["embed", model, flag, missing, *(["--out", out] if flag == "--input" else [])])
        assert result.exit_code == 2, (flag, result.output)
        assert result.stderr.startswith(f"error [parameter_invalid] {flag} {missing} does not exist"), result.stderr
        no_traceback(result)


def test_nothing_embedded_has_its_code_and_blank_lines_count_as_skipped(tmp_path: Path) -> None:
    src = tmp_path / "long.txt"
    src.write_text(("word " * 400 + "\n") * 2, encoding="utf-8")
    result = runner.invoke(app, ["embed", "minilm", "-i", str(src), "-o", str(tmp_path / "o.parquet"),
                                 "--truncate", "none", "--runtime", "torch"])
    assert result.exit_code == 2, result.output  # the items' own code: a parameter error
    assert result.stderr.strip().splitlines()[-1] == \
        "error [parameter_invalid] none of the 2 inputs could be embedded (the reasons are above)"
    src = tmp_path / "gaps.txt"
    src.write_text("first\n\n   \nsecond\n\n", encoding="utf-8")
    out = tmp_path / "gaps.parquet"
    result = runner.invoke(app, ["embed", "minilm", "-i", str(src), "-o", str(out), "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    assert f"wrote 2 embeddings to {out}; 3 skipped (3 blank lines)" in result.stderr
    assert pq.read_table(out).column("id").to_pylist() == ["1", "4"]
    shards = tmp_path / "gaps"
    result = runner.invoke(app, ["embed", "minilm", "-i", str(src), "-o", f"{shards}/", "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    assert f"wrote 1 shards to {shards}: 2 embeddings, 0 error rows; 3 blank lines skipped" in result.stderr


def test_geo_without_dates_says_one_plain_line(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    from geo_data import shared_geo_dir

    geo_dir = shared_geo_dir(tmp_path_factory)
    proc = subprocess.run(
        [sys.executable, "-m", "omniembed.cli", "geo", "embed", "gse", "--point", "121.5", "31.2", "--buffer", "600",
         "--backend", "local", "--source", str(geo_dir / "gse")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMNIEMBED_CACHE_DIR": str(tmp_path), "PYTHONWARNINGS": "default"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "note: no --start/--end: using the default window 2022-06-01..2022-09-01 (as rs-embed); give --start "
        "YYYY-MM-DD --end YYYY-MM-DD to choose"]
    assert len(json.loads(proc.stdout)["embedding"]) == 64


def test_a_folder_of_audio_files_to_shards_is_one_pooled_row_per_file(tmp_path: Path, engine: omniembed.Engine) -> None:
    folder = tmp_path / "tones"
    folder.mkdir()
    for k, freq in enumerate((220.0, 440.0, 880.0)):
        sf.write(folder / f"t{k}.wav", tone(2.5, 16000, freq), 16000)
    out = tmp_path / "shards"
    result = runner.invoke(app, ["embed", "speaker-ge2e", "--input", str(folder), "--out", f"{out}/",
                                 "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    assert f"wrote 1 shards to {out}: 3 embeddings, 0 error rows" in result.stderr
    assert json.loads((out / "_manifest.json").read_text())["modality"] == "audio"
    table = pq.read_table(out / "part-00000.parquet").to_pydict()
    assert table["id"] == ["t0.wav", "t1.wav", "t2.wav"]
    for name, vector in zip(table["id"], table["embedding"], strict=True):
        expected = engine.embed("speaker-ge2e", audio=str(folder / name), runtime="torch").vector
        np.testing.assert_allclose(vector, expected, atol=1e-4)
