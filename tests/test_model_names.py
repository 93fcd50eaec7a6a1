"""Model names from clients resolve only against the registry and the operator's start-up models: no
paths, no `~`, no hub lookups, nothing on disk, so a flood of bad names cannot stall the server.
`/v1/models` lists only models that can run here, and `GET /v1/models/{id}` answers the client's
`models.retrieve`."""

from __future__ import annotations

import asyncio
import pathlib
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

import omniembed
import omniembed.api as api
from omniembed import ModelNotFound
from omniembed.embedding import Modality
from omniembed.registry import ModelSpec, Registry, WeightsSource
from omniembed.service import create_app
from service_util import Server

BAD_NAMES = ["org/name", "/etc", "/nonexistent", "~x", "~root", "../x", "sentence-transformers/all-mpnet-base-v2"]
RUNNABLE = {Modality.TEXT, Modality.IMAGE, Modality.AUDIO}


@pytest.fixture
def no_disk(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records (and refuses) every weights lookup, folder read and path probe made from here on."""
    touched: list[str] = []

    def refuse(what: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            touched.append(f"{what}{args!r}")
            raise AssertionError(f"{what} called for a client's model name")

        return call

    real_is_dir, real_expanduser = pathlib.Path.is_dir, pathlib.Path.expanduser
    probes = {str(Path(n)) for n in BAD_NAMES} | {"/root"}  # "~root" would expand to /root

    def is_dir(self: Path) -> bool:
        if str(self) in probes:
            touched.append(f"is_dir({self})")
        return real_is_dir(self)

    def expanduser(self: Path) -> Path:
        if str(self) in probes:
            touched.append(f"expanduser({self})")
        return real_expanduser(self)

    monkeypatch.setattr(api, "locate_weights", refuse("locate_weights"))
    monkeypatch.setattr(api, "spec_for_folder", refuse("spec_for_folder"))
    monkeypatch.setattr(pathlib.Path, "is_dir", is_dir)
    monkeypatch.setattr(pathlib.Path, "expanduser", expanduser)
    return touched


# -- the engine ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BAD_NAMES)
def test_served_spec_refuses_paths_and_hub_ids_without_touching_disk(
    engine: omniembed.Engine, no_disk: list[str], name: str
) -> None:
    started = time.perf_counter()
    with pytest.raises(ModelNotFound) as info:
        engine.served_spec(name, Modality.TEXT)
    assert time.perf_counter() - started < 0.5
    assert no_disk == []
    assert info.value.code == "model_not_found" and "GET /v1/models" in info.value.message


def test_served_spec_knows_names_and_aliases_case_insensitively(engine: omniembed.Engine, no_disk: list[str]) -> None:
    for name in ("minilm", "MiniLM", " all-MiniLM-L6-v2 ", "sentence-transformers/all-MiniLM-L6-v2"):
        assert engine.served_spec(name).name == "minilm"
    assert no_disk == []


def test_spec_never_crashes_on_odd_names(engine: omniembed.Engine) -> None:
    for name in ("~x", "~no-such-user-here/model", "a" * 5000, "x\0y"):
        with pytest.raises(ModelNotFound):
            engine.spec(name)


def test_operator_added_folder_is_served_by_its_names(settings: omniembed.Settings, minilm_dir: Path,
                                                       tmp_path: Path) -> None:
    engine = omniembed.Engine(settings)
    with pytest.raises(ModelNotFound):
        engine.served_spec(str(minilm_dir))  # not until the operator adds it
    spec = engine.serve(str(minilm_dir))  # what `serve --models FOLDER` does at start-up
    assert engine.served_spec(str(minilm_dir)) is spec and engine.served_spec(spec.name) is spec
    assert spec in engine.served_specs() and spec in engine.available_specs(max_age_sec=0)
    with pytest.raises(ModelNotFound):
        engine.served_spec(str(tmp_path))  # another folder is still a path from a client
    assert engine.serve("minilm").name == "minilm"  # registered names need no approval


def test_not_found_hints_stay_within_the_modality(engine: omniembed.Engine) -> None:
    geo = {s.name for s in engine.registry if Modality.GEO in s.modalities}
    text = {s.name for s in engine.registry if Modality.TEXT in s.modalities}
    for name in ("text-embedding-3-small", "gte", "e5-large", "bert"):
        with pytest.raises(ModelNotFound) as info:
            engine.served_spec(name, Modality.TEXT)
        assert not any(f"'{g}'" in info.value.message or f" {g}," in info.value.message for g in geo), \
            info.value.message
    assert engine.registry.suggest("mini-lm", Modality.TEXT) == ["minilm"]
    assert set(engine.registry.suggest("clip", Modality.IMAGE)) <= {s.name for s in engine.registry
                                                                    if Modality.IMAGE in s.modalities}
    message = engine.registry.not_found_message("text-embedding-3-small", Modality.TEXT)
    assert "Models that embed text" in message and all(t in message for t in text)


def _fake(name: str, modality: Modality, weights: WeightsSource) -> ModelSpec:
    return ModelSpec(name, "x:y", (modality,), 8, "mean", True, weights, "MIT")


def test_not_found_hints_put_runnable_models_first_and_say_how_to_get_the_rest(
    settings: omniembed.Settings, no_disk: list[str]
) -> None:
    here, hub, package = WeightsSource(), WeightsSource(hub_id="nobody/alpha-one"), WeightsSource(package="alpha_pkg")
    registry = Registry([_fake("alpha-one", Modality.TEXT, hub), _fake("alpha-two", Modality.TEXT, here),
                         _fake("alpha-pkg", Modality.TEXT, package), _fake("alpha-img", Modality.IMAGE, here)])
    ready = {"alpha-two", "alpha-img"}.__contains__
    runnable = lambda s: ready(s.name)  # noqa: E731
    # the closest name (alpha-one) cannot run: the one that can comes first
    assert registry.suggest("alpha-on", Modality.TEXT, runnable=runnable)[0] == "alpha-two"
    assert registry.suggest("alpha-on", Modality.TEXT)[0] == "alpha-one"  # without the knowledge: closeness
    message = registry.not_found_message("alpha-on", Modality.TEXT, runnable=runnable)
    assert message.startswith("no model named 'alpha-on'. Did you mean 'alpha-two'? ('alpha-one', 'alpha-pkg' match "
                              "too, but without weights here: `omniembed models prepare alpha-one` downloads them "
                              "(needs the network).)"), message
    # only models without weights are close: how to get the closest, and what of the modality runs here
    text_only = Registry([_fake("alpha-one", Modality.TEXT, hub), _fake("alpha-pkg", Modality.TEXT, package),
                          _fake("beta", Modality.TEXT, here), _fake("alpha-img", Modality.IMAGE, here)])
    message = text_only.not_found_message("alpha-pk", Modality.TEXT, runnable=lambda s: s.name in {"beta", "alpha-img"})
    assert "Did you mean 'alpha-pkg' or 'alpha-one'? Their weights are not here; for 'alpha-pkg': `pip install " \
           "alpha-pkg` installs them." in message, message
    assert "Models that embed text with weights here: 'beta'." in message and "alpha-img" not in message
    # the server's hint uses the last scan of what runs here and touches no disk for a client's name
    engine = omniembed.Engine(settings, registry=text_only)
    engine._available = (time.monotonic(), [s for s in text_only if s.name in {"beta", "alpha-img"}])
    with pytest.raises(ModelNotFound) as info:
        engine.served_spec("alpha-pk", Modality.TEXT)
    assert "Models that embed text with weights here: 'beta'." in info.value.message
    assert no_disk == []


# -- the app in-process: the routes themselves touch no disk for a client's name --------------------------


@pytest.fixture
def app_client(tmp_path: Path, cache_dir: Path) -> Iterator[TestClient]:
    settings = omniembed.Settings(cache_dir=cache_dir, data_dir=tmp_path, hub_offline=True, serve_models=[])
    app = create_app(settings)
    with TestClient(app) as client:
        # the start-up's own disk work (finding a joint model for the Marengo names) ends before the test
        # starts refusing disk access: only what a client's request does is under test
        deadline = time.monotonic() + 60
        while not app.state.twelvelabs.resolved.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state.twelvelabs.resolved.is_set()
        yield client


def test_routes_answer_404_for_paths_and_hub_ids_without_disk(app_client: TestClient, no_disk: list[str]) -> None:
    for name in BAD_NAMES:
        r = app_client.post("/v1/embeddings", json={"model": name, "input": "x"})
        assert r.status_code == 404, (name, r.text)
        assert r.json()["error"]["code"] == "model_not_found" and r.json()["error"]["param"] == "model"
        r = app_client.post(f"/api/tasks/text-embedding/{quote(name, safe='')}/jobs", json={"text": "x"})
        assert r.status_code == 404, (name, r.text)
        # A name with a slash cannot match the route's {model} segment: "no such route", also a 404.
        assert r.json()["code"] in ({"model_not_found", "resource_not_exist"} if "/" in name else {"model_not_found"})
        r = app_client.get(f"/v1/models/{quote(name, safe='')}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", (name, r.text)
    assert no_disk == []


# -- the real server ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, settings: omniembed.Settings,
           minilm_dir: Path) -> Iterator[Server]:
    # The operator's --models: a registered name and a local folder.
    srv = Server(tmp_path_factory.mktemp("names-srv"), settings.cache_dir,
                 OMNIEMBED_SERVE_MODELS=f"minilm,{minilm_dir}").start(timeout=300)
    yield srv
    srv.stop()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_a_flood_of_bad_names_gets_404_while_health_stays_up(server: Server) -> None:
    async def flood() -> tuple[list[httpx.Response], list[tuple[int, float]], float]:
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client, \
                httpx.AsyncClient(base_url=server.url, timeout=60) as probe:
            done = asyncio.Event()
            health: list[tuple[int, float]] = []

            async def watch() -> None:
                while not done.is_set() or not health:
                    started = time.perf_counter()
                    r = await probe.get("/health")
                    health.append((r.status_code, time.perf_counter() - started))
                    await asyncio.sleep(0.005)

            def request(i: int) -> Any:
                name = BAD_NAMES[i % len(BAD_NAMES)].replace("org/", f"org{i}/")
                if i % 2:
                    return client.post(f"/api/tasks/text-embedding/{quote(name, safe='')}/jobs", json={"text": "x"})
                return client.post("/v1/embeddings", json={"model": name, "input": "x"})

            watcher = asyncio.create_task(watch())
            started = time.perf_counter()
            responses = await asyncio.gather(*(request(i) for i in range(200)))
            elapsed = time.perf_counter() - started
            done.set()
            await watcher
            return list(responses), health, elapsed

    responses, health, elapsed = asyncio.run(flood())
    assert [r.status_code for r in responses] == [404] * 200
    assert all(r.json().get("error", r.json()).get("code") in {"model_not_found", "resource_not_exist"}
               for r in responses)
    assert health and all(status == 200 for status, _ in health)
    times = [t for _, t in health]
    print(f"\n200 bad-name requests in {elapsed:.2f} s; /health during the flood: n={len(times)} "
          f"p50={statistics.median(times) * 1000:.1f} ms max={max(times) * 1000:.1f} ms "
          f"p95={_percentile(times, 0.95) * 1000:.1f} ms")


def test_openai_client_lists_and_retrieves_only_runnable_models(server: Server, settings: omniembed.Settings,
                                                                 minilm_dir: Path) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    engine = omniembed.Engine(settings)
    folder = engine.serve(str(minilm_dir))
    ids = [m.id for m in client.models.list()]
    assert "minilm" in ids and folder.name in ids  # the operator's folder is listed under its name
    assert ids == sorted(ids)
    for spec in engine.registry:
        runnable = engine.weights_available(spec) and bool(RUNNABLE.intersection(spec.modalities))
        assert (spec.name in ids) == runnable, spec.name
    model = client.models.retrieve("minilm")
    assert (model.id, model.object, model.owned_by) == ("minilm", "model", "omniembed")
    assert isinstance(model.created, int) and model.model_extra and model.model_extra["dimensions"] == 384
    assert client.models.retrieve("all-MiniLM-L6-v2").id == "minilm"  # an alias answers the model itself
    assert client.models.retrieve(str(minilm_dir)).id == folder.name
    missing = [s.name for s in engine.registry if s.name not in ids]
    for name in ["no-such-model", "org/name", *missing[:3]]:
        with pytest.raises(openai.NotFoundError) as info:
            client.models.retrieve(name)
        assert info.value.code == "model_not_found"
    # The operator's folder embeds over HTTP under the name it was given; any other folder is refused.
    r = httpx.post(f"{server.url}/v1/embeddings", json={"model": str(minilm_dir), "input": "a cat"})
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384
    r = httpx.post(f"{server.url}/v1/embeddings", json={"model": str(minilm_dir.parent), "input": "a cat"})
    assert r.status_code == 404
