"""rs-embed's error names on omniembed's error tree, so ``except SpecError`` / ``except ModelError`` in
rs-embed code catches what ``omniembed.geo`` raises, and ``except ParameterInvalid`` in omniembed code
still does. Their place in the whole tree, with codes and statuses, is drawn in ``omniembed.errors``::

    OmniEmbedError
    ├── ParameterInvalid
    │   ├── SpecError                   a spec's .validate() (BBox, TemporalSpec, ...): param names the field
    │   ├── ModelRequestInvalid         also a ModelError: a request the model cannot serve as given
    │   │   └── InputPrepInvalid        also a SpecError: an unusable input_prep (rs-embed: a ModelError)
    ├── ModelNotFound
    │   └── UnknownModel                also a ModelError
    ├── ModelLoadFailed
    │   └── ModelLoadError              also a ModelError
    ├── WeightsNotFound
    │   └── ModelWeightsMissing         also a ModelError
    └── ModelError (group)              rs-embed's ModelError: the base of the four above

``ModelError`` is a base the face's concrete errors also derive from (rs-embed raises it for unknown
models, invalid request arguments and models that cannot run); each keeps the code and status of its
omniembed parent, so the HTTP faces and the CLI report them as before.
"""

from __future__ import annotations

from omniembed.errors import ModelLoadFailed, ModelNotFound, OmniEmbedError, ParameterInvalid, WeightsNotFound

__all__ = ["InputPrepInvalid", "ModelError", "ModelLoadError", "ModelRequestInvalid", "ModelWeightsMissing",
           "SpecError", "UnknownModel", "model_error"]


class SpecError(ParameterInvalid):
    """A spec (``BBox``, ``PointBuffer``, ``TemporalSpec``, ``OutputSpec``, ...) is invalid: rs-embed's
    ``SpecError``. Its ``param`` names the field to change."""


class ModelError(OmniEmbedError, group=True):
    """rs-embed's ``ModelError``: the model cannot serve the request as given. Raised as one of its
    subclasses, which also derive from the matching omniembed error."""


class ModelRequestInvalid(ModelError, ParameterInvalid):
    """An argument of the call is invalid for this model (``parameter_invalid``)."""


class InputPrepInvalid(ModelRequestInvalid, SpecError):
    """An unusable ``input_prep``: a ``ModelError``, as rs-embed raises for it, and a ``SpecError`` like the
    other specs' (``parameter_invalid``)."""


class UnknownModel(ModelError, ModelNotFound):
    """No such model (``model_not_found``)."""


class ModelLoadError(ModelError, ModelLoadFailed):
    """The model's weights were found but could not be loaded (``model_load_failed``)."""


class ModelWeightsMissing(ModelError, WeightsNotFound):
    """The model's weights are not available here (``weights_not_found``)."""


# omniembed's class -> rs-embed's, and how rs-embed words it (its messages start "Unknown model").
_AS_MODEL_ERROR: tuple[tuple[type[OmniEmbedError], type[ModelError], str], ...] = (
    (ModelNotFound, UnknownModel, "Unknown model: "),
    (ModelLoadFailed, ModelLoadError, ""),
    (WeightsNotFound, ModelWeightsMissing, ""),
)


def model_error(exc: OmniEmbedError) -> OmniEmbedError:
    """``exc`` as a ``ModelError`` too (same fields and code; an unknown model's message in rs-embed's words),
    unless it already is one or is not about the model (input and backend errors stay as they are). Chosen by
    class, and for ``ParameterInvalid`` by its ``param``: bands the model cannot get from the source
    (``param="bands"``) are a ``ModelRequestInvalid``, as rs-embed raises a ``ModelError`` for them."""
    if isinstance(exc, ModelError):
        return exc
    found = [(cls, words) for base, cls, words in _AS_MODEL_ERROR if isinstance(exc, base)]
    if not found and type(exc) is ParameterInvalid and exc.param == "bands":
        found = [(ModelRequestInvalid, "")]
    if not found:
        return exc
    cls, words = found[0]
    out: OmniEmbedError = cls(words + exc.message, **exc.fields())
    out.__cause__ = exc.__cause__
    return out
