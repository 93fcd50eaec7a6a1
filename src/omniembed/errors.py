"""The omniembed error tree: the one source of every error code and HTTP status.

Every error omniembed raises on purpose derives from one root. Each class declares its stable
machine-readable ``code`` (the string every face answers with) and its HTTP ``status``; the service's
status map, TwelveLabs' codes, ``omniembed.Client``'s code -> class map and the rebuilding of Ray's error
rows are all derived from these classes (``status_map``, ``class_for_code``), and a class that declares a
code twice with different statuses, or none, fails when it is defined. The whole tree (the service's
errors live here; rs-embed's names, marked *geo*, live in ``omniembed.geo.errors``)::

    OmniEmbedError (group)              internal_error           500
    ├── ParameterError (group)          parameter_invalid        400
    │   ├── ParameterInvalid            parameter_invalid        400
    │   │   ├── SpecError (geo)         parameter_invalid        400
    │   │   └── ModelRequestInvalid     parameter_invalid        400  (geo; also a ModelError)
    │   └── ParameterNotProvided        parameter_not_provided   400
    ├── ModelNotFound                   model_not_found          404  (TwelveLabs: resource_not_exist)
    │   └── UnknownModel (geo)          model_not_found          404  (also a ModelError)
    ├── WeightsNotFound                 weights_not_found        503
    │   └── ModelWeightsMissing (geo)   weights_not_found        503  (also a ModelError)
    ├── ModelLoadFailed                 model_load_failed        500
    │   └── ModelLoadError (geo)        model_load_failed        500  (also a ModelError)
    ├── RuntimeUnavailable              runtime_unavailable      503
    │   └── BackendAuthFailed           backend_auth_failed      503  (a remote raster source refused us)
    ├── InputError (group)              input_unreadable         400
    │   ├── InputUnreadable             input_unreadable         400
    │   └── InputTooLarge               input_too_large          413
    ├── InternalError                   internal_error           500  (with an incident id in the log)
    ├── EmbeddingNotFinite              embedding_not_finite     500  (a model gave NaN/inf for one item)
    ├── NotFound                        resource_not_exist       404  (a route, task or job)
    ├── MethodNotAllowed                method_not_allowed       405
    ├── ApiKeyInvalid                   api_key_invalid          401
    ├── TooManyRequests                 too_many_requests        429
    ├── RequestTimeout                  request_timeout          504
    └── ModelError (geo, group)         internal_error           500  (rs-embed's base of the four above)

Catch at any level: ``except InputError`` catches both unreadable and too-large inputs. A *group* is a
class that exists to be caught, not raised: where several classes share a code, the one a code is rebuilt
into (by the client, from a Ray row) is the most general class of the code that is not a group
(``ParameterInvalid`` for ``parameter_invalid``, ``InternalError`` for ``internal_error``).

Errors carry structure, not text. Besides the message (what to change) an error carries fields, set by
whoever raises it and formatted by each face in its client's terms, never parsed back out of a message:

- ``param``: the parameter at fault, in the engine's terms (a face renames it: TwelveLabs' ``text_truncate``
  for ``truncate``). A message that names its own parameter is made with ``naming``, from a template with
  ``{param}`` where the name goes, so that renaming the field words the message in the face's terms.
- ``index``: the batch item, never written into the message: whoever splits a batch sets it
  (``at_index``) and translates it back to the caller's numbering (``shifted``); each face formats it (OpenAI
  ``input[i]``, a CLI line number, an export's region id).
- ``model``: the model the error is about (the served name).
- ``hint``: the operator's fix, as a command (``omniembed models prepare minilm``, ``pip install ...``).
- ``detail``: log-only context (server paths, an exception's text): shown locally (``str(error)``, the
  CLI, Ray rows), logged by the server, never sent to a remote client.
- ``incident``: the id under which the log holds an unexpected error's traceback
  (``InternalError.from_exception``).

Errors are immutable: ``at_index``, ``shifted`` and ``replace`` return new errors of the same class (with the
same ``__cause__``), and errors pickle with their class and every field (Ray ships them between processes).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar, Self, TypeVar

__all__ = [
    "ApiKeyInvalid",
    "BackendAuthFailed",
    "EmbeddingNotFinite",
    "InputError",
    "InputTooLarge",
    "InputUnreadable",
    "InternalError",
    "MethodNotAllowed",
    "ModelLoadFailed",
    "ModelNotFound",
    "NotFound",
    "OmniEmbedError",
    "ParameterError",
    "ParameterInvalid",
    "ParameterNotProvided",
    "RequestTimeout",
    "RuntimeUnavailable",
    "TooManyRequests",
    "WeightsNotFound",
]

# ``__all__`` lists the error classes; FIELDS, PARAM and the derived maps (``error_classes``, ``status_map``,
# ``class_for_code``) are public too, imported by name.
FIELDS = ("param", "index", "model", "hint", "detail", "incident")
"""The fields every error carries besides its message (None when not known)."""

PARAM = "{param}"
"""Where a message names its own parameter: formatted with the ``param`` field."""

# What Python itself sets on an exception (raise ... from, tracebacks, add_note): these stay settable.
_PYTHON_OWN = frozenset({"__traceback__", "__cause__", "__context__", "__suppress_context__", "__notes__"})
_STATUS_OF: dict[str, int] = {}  # code -> status, as declared: one status per code
E = TypeVar("E", bound="OmniEmbedError")


def _rebuild(cls: type[E], message: str, template: str | None, fields: dict[str, Any]) -> E:
    """An error of ``cls`` from its message (or template) and fields: unpickling and ``replace``."""
    param = fields.get("param")
    if template is not None and param is not None:
        message = template.replace(PARAM, param)
    out = cls.__new__(cls, message)
    OmniEmbedError.__init__(out, message, **fields)
    if template is not None and param is not None:
        out.__dict__["_template"] = template
    return out


class OmniEmbedError(Exception):
    """Root of every error omniembed raises on purpose."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    twelvelabs_code: ClassVar[str | None] = None
    """TwelveLabs' name for this error's code, where it has its own (None: ``code``)."""
    group: ClassVar[bool] = True
    """A class to catch, not to raise: never the class a code is rebuilt into."""

    message: str
    param: str | None
    index: int | None
    model: str | None
    hint: str | None
    detail: str | None
    incident: str | None
    _template: str | None

    def __init_subclass__(cls, *, group: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.group = group
        if not isinstance(cls.code, str) or not cls.code:
            raise TypeError(f"{cls.__qualname__} must declare a non-empty string code, not {cls.code!r}")
        if not isinstance(cls.status, int) or isinstance(cls.status, bool) or not 400 <= cls.status <= 599:
            raise TypeError(f"{cls.__qualname__} must declare an HTTP status in 400..599, not {cls.status!r}")
        declared = _STATUS_OF.setdefault(cls.code, cls.status)
        if declared != cls.status:
            raise TypeError(f"{cls.__qualname__} declares code {cls.code!r} with status {cls.status}, but it is "
                            f"already declared with status {declared}: one status per code")

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        index: int | None = None,
        model: str | None = None,
        hint: str | None = None,
        detail: str | None = None,
        incident: str | None = None,
    ) -> None:
        values = {"param": param, "index": index, "model": model, "hint": hint, "detail": detail,
                  "incident": incident}
        super().__init__(message)
        self.__dict__.update(values, message=message, _template=None, _frozen=True)

    @classmethod
    def naming(cls, template: str, *, param: str, **fields: Any) -> Self:
        """An error whose message names its own parameter where ``template`` has ``{param}``, formatted with
        the ``param`` field: a face that renames the field (``replace(param=...)``) re-words the message in
        its own terms. Keep the caller's strings out of ``template`` (numbers are fine)."""
        out = cls(template.replace(PARAM, param), param=param, **fields)
        out.__dict__["_template"] = template
        return out

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _PYTHON_OWN or not self.__dict__.get("_frozen"):
            super().__setattr__(name, value)
            return
        raise AttributeError(f"{type(self).__name__} is immutable: replace(), at_index() and shifted() make changed "
                             "copies")

    def __delattr__(self, name: str) -> None:
        if name in _PYTHON_OWN or not self.__dict__.get("_frozen"):
            super().__delattr__(name)
            return
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.message, self._template, self.fields())

    def __str__(self) -> str:
        where = f" (item {self.index})" if self.index is not None else ""
        more = f"\n{self.detail}" if self.detail else ""
        return f"[{self.code}]{where} {self.message}{more}"

    def fields(self) -> dict[str, Any]:
        """Every field (``FIELDS``), None where not known: with the class and the message, the whole error."""
        return {key: getattr(self, key) for key in FIELDS}

    def replace(self, **fields: Any) -> Self:
        """A new error of the same class and message with ``fields`` changed (the message is re-formatted
        when it names its ``param``); ``__cause__`` and notes are kept."""
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise TypeError(f"replace() takes the fields {', '.join(FIELDS)}, not {', '.join(sorted(unknown))}")
        out = _rebuild(type(self), self.message, self._template, {**self.fields(), **fields})
        if self.__cause__ is not None:
            out.__cause__ = self.__cause__
        out.__suppress_context__ = self.__suppress_context__
        if hasattr(self, "__notes__"):
            out.__notes__ = list(self.__notes__)
        return out

    def at_index(self, index: int | None) -> Self:
        """A copy of this error that names the batch item it belongs to (the message is unchanged)."""
        return self.replace(index=index)

    def shifted(self, offset: int) -> Self:
        """A copy whose index is moved by ``offset`` (a chunk's error, renumbered for the whole call)."""
        return self if self.index is None or not offset else self.at_index(self.index + offset)

    def to_dict(self) -> dict[str, object]:
        """The error as plain data a client may read (what the CLI and the HTTP faces print): code, message,
        and ``param``, ``index``, ``incident`` where set; never ``detail``."""
        out: dict[str, object] = {"code": self.code, "message": self.message}
        for key in ("param", "index", "incident"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


_STATUS_OF[OmniEmbedError.code] = OmniEmbedError.status


class ParameterError(OmniEmbedError, group=True):
    """A call parameter is wrong or missing."""

    code = "parameter_invalid"
    status = 400


class ParameterInvalid(ParameterError):
    """A parameter has a value omniembed cannot use."""

    code = "parameter_invalid"
    status = 400


class ParameterNotProvided(ParameterError):
    """A required parameter was not given."""

    code = "parameter_not_provided"
    status = 400


class ModelNotFound(OmniEmbedError):
    """No registered model, alias, local directory or reachable hub id has this name."""

    code = "model_not_found"
    status = 404
    twelvelabs_code = "resource_not_exist"


class WeightsNotFound(OmniEmbedError):
    """The model is known, but its weights are in none of the places omniembed looked."""

    code = "weights_not_found"
    status = 503


class ModelLoadFailed(OmniEmbedError):
    """The weights were found but could not be loaded (corrupt or incompatible files)."""

    code = "model_load_failed"
    status = 500


class RuntimeUnavailable(OmniEmbedError):
    """The requested runtime, device or optional dependency is not available here."""

    code = "runtime_unavailable"
    status = 503


class BackendAuthFailed(RuntimeUnavailable):
    """A remote raster backend (Earth Engine) refused this machine's credentials or has no Cloud project to
    bill: the message says how to authenticate and which project setting to set."""

    code = "backend_auth_failed"
    status = 503


class InputError(OmniEmbedError, group=True):
    """An input item cannot be embedded."""

    code = "input_unreadable"
    status = 400


class InputUnreadable(InputError):
    """An input item cannot be decoded or read."""

    code = "input_unreadable"
    status = 400


class InputTooLarge(InputError):
    """An input item, the request body or the number of items is over a configured limit."""

    code = "input_too_large"
    status = 413


class InternalError(OmniEmbedError):
    """Something failed that omniembed did not expect: a defect. The traceback is in the log under
    ``incident``, which the message also shows, so a client's report can be matched to it."""

    code = "internal_error"
    status = 500

    @classmethod
    def from_exception(
        cls, exc: BaseException, what: str, *, logger: logging.Logger | None = None, index: int | None = None
    ) -> InternalError:
        """Log ``exc`` with its traceback under a new incident id and return the error to give the client."""
        incident = uuid.uuid4().hex[:12]
        (logger or logging.getLogger("omniembed")).error(
            "%s failed (incident %s)", what, incident, exc_info=(type(exc), exc, exc.__traceback__)
        )
        message = f"{what} failed unexpectedly (incident {incident}); the server log has the details"
        return cls(message, index=index, incident=incident, detail=f"{type(exc).__name__}: {exc}"[:2000])


class EmbeddingNotFinite(OmniEmbedError):
    """The model gave NaN or infinite values for an item whose input was accepted. The pipeline checks
    every vector it returns: such an item gets this error in its place (its ``index``; the other items are
    embedded), never a vector holding NaN."""

    code = "embedding_not_finite"
    status = 500


# -- the service's errors (HTTP only, but declared here with the rest of the tree) ----------------------


class NotFound(OmniEmbedError):
    """A route, task or job that does not exist."""

    code = "resource_not_exist"
    status = 404


class MethodNotAllowed(OmniEmbedError):
    """The route exists, but not for this HTTP method."""

    code = "method_not_allowed"
    status = 405


class ApiKeyInvalid(OmniEmbedError):
    """No or a wrong API key (only when the server has OMNIEMBED_API_KEYS)."""

    code = "api_key_invalid"
    status = 401


class TooManyRequests(OmniEmbedError):
    """The model's queue is full: retry after ``Retry-After`` seconds."""

    code = "too_many_requests"
    status = 429


class RequestTimeout(OmniEmbedError):
    """The embedding did not finish within the per-request deadline (OMNIEMBED_REQUEST_TIMEOUT_SEC)."""

    code = "request_timeout"
    status = 504


# -- maps derived from the tree ---------------------------------------------------------------------------


def error_classes() -> Iterator[type[OmniEmbedError]]:
    """Every class of the tree (depth first, the root first) that omniembed defines; classes of modules
    not yet imported (``omniembed.geo.errors``) are included once imported."""
    seen: set[type[OmniEmbedError]] = set()

    def walk(cls: type[OmniEmbedError]) -> Iterator[type[OmniEmbedError]]:
        if cls in seen or not cls.__module__.startswith("omniembed."):
            return
        seen.add(cls)
        yield cls
        for sub in cls.__subclasses__():
            yield from walk(sub)

    yield from walk(OmniEmbedError)


def status_map() -> dict[str, int]:
    """Every code and its HTTP status, as the classes declare them."""
    return {cls.code: cls.status for cls in error_classes()}


def class_for_code(code: str, *, face: str | None = None) -> type[OmniEmbedError]:
    """The class an error with ``code`` is rebuilt into: the most general class of the code that is not a
    group. ``face="twelvelabs"``: ``code`` as TwelveLabs' face answers it, where a class names its code
    differently there (``resource_not_exist`` is then ``ModelNotFound``). An unknown code is a KeyError,
    and two unrelated classes sharing a code are a TypeError: both are defects, never a silent default."""
    classes = [c for c in error_classes() if not c.group]
    candidates = [c for c in classes if c.code == code]
    if face == "twelvelabs":
        renamed = [c for c in classes if c.twelvelabs_code is not None and c.twelvelabs_code == code]
        candidates = renamed or candidates
    elif face is not None:
        raise ValueError(f"face must be None or 'twelvelabs', not {face!r}")
    if not candidates:
        raise KeyError(f"no omniembed error has the code {code!r}")
    general = [c for c in candidates if all(issubclass(o, c) for o in candidates)]
    if len(general) != 1:
        raise TypeError(f"the code {code!r} belongs to unrelated classes: {', '.join(c.__name__ for c in candidates)}")
    return general[0]
