"""The error tree is the one source of codes and statuses: every class declares both, every map (the
service's statuses, TwelveLabs' codes, ``omniembed.Client``'s, Ray's rows) is derived from the classes, errors
are immutable and pickle with every field, and no face parses or rewrites a message."""

from __future__ import annotations

import json
import logging
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import omniembed
import omniembed.geo.errors as geo_errors
import omniembed.service.errors as service_errors
from omniembed import errors
from omniembed.errors import (
    InternalError,
    ModelLoadFailed,
    ModelNotFound,
    OmniEmbedError,
    ParameterInvalid,
    RuntimeUnavailable,
    WeightsNotFound,
    class_for_code,
    status_map,
)
from omniembed.service import create_app
from omniembed.service.errors import error_response, public_message

SRC = Path(omniembed.__file__).parent


def _walk(cls: type[OmniEmbedError]) -> Iterator[type[OmniEmbedError]]:
    """Every subclass, recursively (the test's own walk, independent of ``errors.error_classes``)."""
    yield cls
    for sub in cls.__subclasses__():
        if sub.__module__.startswith("omniembed."):
            yield from _walk(sub)


ALL = sorted(set(_walk(OmniEmbedError)), key=lambda c: c.__name__)
RAISED = [c for c in ALL if not c.group]


def _full(cls: type[OmniEmbedError]) -> OmniEmbedError:
    return cls("something is wrong", param="p", index=3, model="minilm", hint="omniembed models prepare minilm",
               detail="/srv/secret/path: OSError", incident="abc123")


# -- the tree ----------------------------------------------------------------------------------------------


def test_the_walk_sees_every_module_s_errors() -> None:
    names = {c.__name__ for c in ALL}
    assert {"ParameterInvalid", "InternalError", "TooManyRequests", "ApiKeyInvalid", "RequestTimeout", "NotFound",
            "MethodNotAllowed", "SpecError", "UnknownModel", "ModelError", "ModelWeightsMissing",
            "EmbeddingNotFinite"} <= names
    assert set(errors.error_classes()) == set(ALL)
    # the service's errors are the tree's (re-exported), not a second declaration
    assert service_errors.TooManyRequests is errors.TooManyRequests and geo_errors.SpecError in ALL


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_class_declares_a_code_and_a_status(cls: type[OmniEmbedError]) -> None:
    assert isinstance(cls.code, str) and cls.code and re.fullmatch(r"[a-z_]+", cls.code)
    assert isinstance(cls.status, int) and not isinstance(cls.status, bool) and 400 <= cls.status <= 599
    back = class_for_code(cls.code)  # every code maps back to a class: the most general of the code
    assert not back.group and back.code == cls.code and back.status == cls.status
    assert back.__name__ in errors.__all__  # never a geo alias
    if not cls.group:
        assert issubclass(cls, back)
    twelvelabs = cls.twelvelabs_code or cls.code
    assert class_for_code(twelvelabs, face="twelvelabs").status == cls.status


def test_one_status_per_code_from_the_classes() -> None:
    declared: dict[str, set[int]] = {}
    for cls in ALL:
        declared.setdefault(cls.code, set()).add(cls.status)
    assert all(len(statuses) == 1 for statuses in declared.values()), declared
    assert status_map() == {code: statuses.pop() for code, statuses in declared.items()}
    for cls in RAISED:
        assert service_errors.status_of(cls("x")) == cls.status


def test_a_second_status_for_a_code_or_no_code_is_a_defect_at_definition() -> None:
    with pytest.raises(TypeError, match="one status per code"):
        type("Conflicting", (ParameterInvalid,), {"status": 422, "__module__": "tests.x"})
    with pytest.raises(TypeError, match="HTTP status"):
        type("NoStatus", (OmniEmbedError,), {"code": "brand_new", "status": 200, "__module__": "tests.x"})
    with pytest.raises(TypeError, match="code"):
        type("NoCode", (OmniEmbedError,), {"code": "", "__module__": "tests.x"})
    with pytest.raises(KeyError):
        class_for_code("no_such_code")


def test_the_most_general_class_of_a_code() -> None:
    assert class_for_code("parameter_invalid") is ParameterInvalid  # not the ParameterError group, not SpecError
    assert class_for_code("input_unreadable") is errors.InputUnreadable
    assert class_for_code("internal_error") is InternalError  # the root is a group
    assert class_for_code("model_not_found") is ModelNotFound
    assert class_for_code("resource_not_exist") is errors.NotFound
    assert class_for_code("resource_not_exist", face="twelvelabs") is ModelNotFound  # TwelveLabs' unknown model
    assert ModelNotFound.twelvelabs_code == "resource_not_exist"
    assert class_for_code("embedding_not_finite") is errors.EmbeddingNotFinite  # its own code, a 500
    assert status_map()["embedding_not_finite"] == 500 and not issubclass(errors.EmbeddingNotFinite, errors.InputError)


def test_the_docs_list_every_code_under_its_status() -> None:
    table = (SRC.parent.parent / "docs" / "service.md").read_text().split("| status | codes |")[1].split("\n\n")[0]
    rows = {int(line.split("|")[1]): line for line in table.splitlines() if re.match(r"\| \d{3} \|", line)}
    for code, status in status_map().items():
        assert f"`{code}`" in rows[status], (code, status)


def test_client_map_and_status_map_agree() -> None:
    statuses = status_map()
    for code, status in statuses.items():
        assert class_for_code(code).status == status
        assert class_for_code(code, face="twelvelabs").status == status


# -- no parsing, no rewriting, no default ----------------------------------------------------------------------

_FORBIDDEN = [
    (re.compile(r"\.get\([^)]*code[^)]*,\s*\d{3}\)"), "a status default for an unknown code"),
    (re.compile(r"_BY_CODE|TWELVELABS_CODES|\bSTATUS\s*=\s*\{\s*\"parameter"), "a hand-written code table"),
    (re.compile(r"startswith\(\"Unknown model\"\)"), "a message read by its words"),
    (re.compile(r"\.(search|match|fullmatch|findall|finditer|sub|subn|split)\([^\n]*\b(message|str\((exc|e|err|error)\))"),
     "a regex over a message"),
    (re.compile(r"(\.message|\bmessage|str\(exc\))\.replace\("), "a message rewritten with str.replace"),
    (re.compile(r"\b(exc|err|error|out|located|result)\.(message|param|index|code|incident)\s*=[^=]"),
     "an error changed in place"),
]


def test_no_message_is_parsed_or_rewritten_and_no_code_has_a_default() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for pattern, why in _FORBIDDEN:
                if pattern.search(line):
                    found.append(f"{path.relative_to(SRC)}:{n}: {why}: {line.strip()}")
    assert not found, "\n".join(found)


# -- immutable, copied with fields, pickled ---------------------------------------------------------------------


def test_errors_are_immutable_but_python_can_chain_them() -> None:
    err = _full(ParameterInvalid)
    for name in ("message", "param", "index", "model", "hint", "detail", "incident", "code", "anything"):
        with pytest.raises(AttributeError):
            setattr(err, name, "x")
    with pytest.raises(AttributeError):
        del err.param
    cause = ValueError("root cause")
    with pytest.raises(ParameterInvalid) as info:
        try:
            raise cause
        except ValueError as exc:
            raise err from exc
    assert info.value.__cause__ is cause and info.value.__traceback__ is not None
    err.add_note("a note")
    err.__context__ = None
    err.__suppress_context__ = True
    assert err.__notes__ == ["a note"]


def test_copies_keep_class_fields_and_cause() -> None:
    err = _full(geo_errors.SpecError)
    err.__cause__ = KeyError("k")
    moved = err.at_index(7)
    assert type(moved) is geo_errors.SpecError and moved.index == 7 and err.index == 3
    assert moved.__cause__ is err.__cause__ and moved.message == err.message
    assert {**moved.fields(), "index": 3} == err.fields()
    assert err.shifted(10).index == 13 and err.shifted(0) is err and err.at_index(None).shifted(5).index is None
    changed = err.replace(model="other", hint=None)
    assert (changed.model, changed.hint, changed.param, changed.detail) == ("other", None, "p", err.detail)
    with pytest.raises(TypeError, match="message"):
        err.replace(message="new words")


@pytest.mark.parametrize("cls", RAISED, ids=lambda c: c.__name__)
def test_errors_pickle_with_class_and_every_field(cls: type[OmniEmbedError]) -> None:
    err = _full(cls)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls and back.fields() == err.fields() and back.message == err.message
    assert str(back) == str(err)
    with pytest.raises(AttributeError):
        back.param = "q"  # still immutable after unpickling


def test_a_message_that_names_its_param_is_worded_by_the_field() -> None:
    err = ParameterInvalid.naming("{param}=3 is past the end of the audio (1.00 s long)", param="start_offset_sec",
                                  index=0)
    assert err.message == "start_offset_sec=3 is past the end of the audio (1.00 s long)"
    own = err.replace(param="audio_start_offset_sec")
    assert own.message == "audio_start_offset_sec=3 is past the end of the audio (1.00 s long)"
    assert pickle.loads(pickle.dumps(own)).replace(param="x").message.startswith("x=3 ")
    plain = ParameterInvalid("no model named '{param}'", param="model")  # not a template: the caller's text
    assert plain.message == "no model named '{param}'"


def test_str_shows_the_detail_to_the_local_user() -> None:
    err = _full(WeightsNotFound)
    assert str(err) == "[weights_not_found] (item 3) something is wrong\n/srv/secret/path: OSError"
    assert "detail" not in err.to_dict() and err.to_dict()["param"] == "p"


# -- each face formats from fields ------------------------------------------------------------------------------


def test_public_message_is_built_from_model_and_hint(caplog: pytest.LogCaptureFixture) -> None:
    err = WeightsNotFound("weights for model 'ghost' were not found", model="ghost", hint="pip install ghost && "
                          "omniembed models prepare ghost", detail="Looked in:\n  - /srv/private/ghost")
    with caplog.at_level(logging.WARNING):
        public = public_message(err)
        public_message(err)
    assert "model 'ghost'" in public and "`pip install ghost && omniembed models prepare ghost`" in public
    assert "/srv" not in public and "Looked in" not in public
    assert sum("/srv/private/ghost" in r.getMessage() for r in caplog.records) == 1  # the log has it, once
    broken = public_message(ModelLoadFailed("x", model="m", detail="/srv/m: OSError"))
    assert "model 'm' could not be loaded" in broken and "`omniembed models prepare m`" in broken
    assert "/srv" not in broken
    unavailable = RuntimeUnavailable("runtime 'onnx' needs onnxruntime", hint="pip install onnxruntime",
                                     detail="/srv/x: ImportError")
    assert public_message(unavailable) == "runtime 'onnx' needs onnxruntime"


def _body(err: OmniEmbedError, path: str) -> tuple[int, Any]:
    response = error_response(err, path)
    return response.status_code, json.loads(bytes(response.body))


def test_each_face_formats_the_fields() -> None:
    item = ParameterInvalid("the text is empty", param="text", index=2)
    assert _body(item, "/v1/embeddings") == (400, {"error": {
        "message": "input[2]: the text is empty", "type": "invalid_request_error", "param": "input",
        "code": "parameter_invalid"}})
    assert _body(item, "/v1.3/embed") == (400, {"code": "parameter_invalid", "message": "the text is empty"})
    assert _body(ModelNotFound("no model named 'x'", model="x"), "/v1.3/embed")[1]["code"] == "resource_not_exist"
    assert _body(ModelNotFound("no model named 'x'"), "/api/x")[1] == {"detail": "no model named 'x'",
                                                                       "code": "model_not_found"}
    status, body = _body(_full(InternalError), "/metrics")
    assert status == 500 and body["error"]["incident"] == "abc123" and "/srv" not in json.dumps(body)
    assert error_response(errors.TooManyRequests("full"), "/v1/embeddings").headers["retry-after"] == "1"


def test_twelvelabs_renames_the_param_field() -> None:
    from omniembed.service.twelvelabs.embed import _own_terms

    offset = ParameterInvalid.naming("{param}=3 is past the end", param="start_offset_sec")
    assert _own_terms(offset).message == "audio_start_offset_sec=3 is past the end"
    assert _own_terms(offset).param == "audio_start_offset_sec"
    too_long = ParameterInvalid.naming("the text is 300 tokens long. Shorten it or set {param} to end or start.",
                                       param="truncate", index=0)
    assert _own_terms(too_long).message.endswith("set text_truncate to end or start.")
    other = ParameterInvalid("bad", param="text")
    assert _own_terms(other) is other


def test_model_error_converts_by_class() -> None:
    unknown = geo_errors.model_error(ModelNotFound("no model named 'x'.", param="model", model="x"))
    assert isinstance(unknown, geo_errors.UnknownModel) and unknown.message == "Unknown model: no model named 'x'."
    assert unknown.model == "x" and unknown.param == "model"
    missing = geo_errors.model_error(_full(WeightsNotFound))
    assert type(missing) is geo_errors.ModelWeightsMissing and missing.fields() == _full(WeightsNotFound).fields()
    bad_input = errors.InputUnreadable("x")
    assert geo_errors.model_error(bad_input) is bad_input


# -- Ray's rows -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", RAISED, ids=lambda c: c.__name__)
def test_ray_rows_rebuild_the_class_with_its_fields(cls: type[OmniEmbedError]) -> None:
    from omniembed.ray.stages import error_from_row, error_row

    err = _full(cls)
    back = error_from_row(error_row(err))
    assert type(back) is class_for_code(cls.code) and isinstance(err, type(back))
    assert back.fields() == err.fields() and back.message == err.message


def test_ray_error_column_round_trip() -> None:
    import pyarrow as pa

    from omniembed.ray.stages import error_column, error_from_row, existing_errors

    errs: list[OmniEmbedError | None] = [None, ParameterInvalid("bad", param="truncate", index=4),
                                         _full(errors.InputTooLarge)]
    table = pa.table({"id": ["a", "b", "c"], "error": error_column(errs)})
    back = existing_errors(table)
    assert back[0] is None
    assert type(back[1]) is ParameterInvalid and (back[1].param, back[1].index) == ("truncate", 4)
    assert type(back[2]) is errors.InputTooLarge and back[2].fields() == errs[2].fields()  # type: ignore[union-attr]
    old = error_from_row({"code": "input_unreadable", "message": "cannot decode"})  # a row from before the fields
    assert type(old) is errors.InputUnreadable and old.param is None
    with pytest.raises(KeyError):
        error_from_row({"code": "never_declared", "message": "x"})


# -- omniembed.Client over HTTP: the class for every code -----------------------------------------------------


def _answering(err: OmniEmbedError) -> Any:
    """``httpx.post`` answering as the server's handler answers ``err`` on /v1.3/embed."""
    response = error_response(err, "/v1.3/embed")

    def post(url: str, **_: Any) -> httpx.Response:
        assert url.endswith("/v1.3/embed")
        return httpx.Response(response.status_code, content=bytes(response.body),
                              headers={"content-type": "application/json"})

    return post


@pytest.mark.parametrize("cls", RAISED, ids=lambda c: c.__name__)
def test_client_raises_the_class_of_every_code(monkeypatch: pytest.MonkeyPatch, cls: type[OmniEmbedError]) -> None:
    """Every code the server can answer, rendered by the server's own error handler, comes back to
    ``omniembed.Client`` as the class the code names (on TwelveLabs' face: ``resource_not_exist`` is an
    unknown model)."""
    monkeypatch.setattr(httpx, "post", _answering(cls("what went wrong")))
    wire = cls.twelvelabs_code or cls.code
    expected = class_for_code(wire, face="twelvelabs")
    with pytest.raises(OmniEmbedError) as info:
        omniembed.Client("http://127.0.0.1:9").embed.create(model_name="minilm", text="x")
    assert type(info.value) is expected and info.value.message == public_message(cls("what went wrong"))
    assert expected.status == cls.status
    if not any(c.twelvelabs_code == wire for c in RAISED):  # a code TwelveLabs' face does not rename
        assert type(info.value) is class_for_code(cls.code)


def test_client_says_when_the_answer_is_not_an_omniembed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def proxy(url: str, **_: Any) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    monkeypatch.setattr(httpx, "post", proxy)
    with pytest.raises(InternalError, match="HTTP 502 without an omniembed error body"):
        omniembed.Client("http://127.0.0.1:9").embed.create(model_name="minilm", text="x")

    def newer(url: str, **_: Any) -> httpx.Response:
        return httpx.Response(418, json={"code": "teapot", "message": "short and stout"})

    monkeypatch.setattr(httpx, "post", newer)
    with pytest.raises(InternalError, match="'teapot', which this version of omniembed does not know"):
        omniembed.Client("http://127.0.0.1:9").embed.create(model_name="minilm", text="x")


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory, settings: omniembed.Settings) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("error-tree-app")
    app = create_app(settings.model_copy(update={"data_dir": data, "api_keys": ["key"], "max_body_bytes": 4096}))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


# what the real server is sent to answer each code, and the class the client raises
REAL: dict[str, tuple[dict[str, Any], type[OmniEmbedError]]] = {
    "parameter_invalid": ({"model_name": "minilm", "text": "x", "text_truncate": "middle"}, ParameterInvalid),
    "parameter_not_provided": ({"model_name": "minilm"}, errors.ParameterNotProvided),
    "resource_not_exist": ({"model_name": "no-such-model", "text": "x"}, ModelNotFound),
    "input_unreadable": ({"model_name": "speaker-ge2e", "audio_file": b"junk" * 20}, errors.InputUnreadable),
    "input_too_large": ({"model_name": "minilm", "text": "word " * 2000}, errors.InputTooLarge),
    "api_key_invalid": ({"model_name": "minilm", "text": "x", "api_key": "wrong"}, errors.ApiKeyInvalid),
}


@pytest.mark.parametrize("code", sorted(REAL))
def test_client_over_a_real_server(monkeypatch: pytest.MonkeyPatch, app_client: TestClient, code: str) -> None:
    """The server raises each error for real (an in-process app: ``httpx.post`` goes to it)."""
    monkeypatch.setattr(httpx, "post", lambda url, timeout=None, **kw: app_client.post(url, **kw))
    call, expected = dict(REAL[code][0]), REAL[code][1]
    client = omniembed.Client("http://testserver", api_key=str(call.pop("api_key", "key")))
    with pytest.raises(OmniEmbedError) as info:
        client.embed.create(**call)
    assert type(info.value) is expected, info.value
    assert info.value.code == expected.code and info.value.message
