"""rs-embed's error names on omniembed's error tree, so ``except SpecError`` / ``except ModelError`` in
rs-embed code catches what ``omniembed.geo`` raises, and ``except ParameterInvalid`` in omniembed code
still does::

    OmniEmbedError
    ├── ParameterInvalid
    │   ├── SpecError                   parameter_invalid  (a spec's .validate(): BBox, TemporalSpec, ...)
    │   └── ModelRequestInvalid         parameter_invalid  (also a ModelError: a request the model cannot
    │                                                      serve as given: empty spatials, bad format, ...)
    ├── ModelNotFound
    │   └── UnknownModel                model_not_found    (also a ModelError)
    ├── ModelLoadFailed
    │   └── ModelLoadError              model_load_failed  (also a ModelError)
    ├── WeightsNotFound
    │   └── ModelWeightsMissing         weights_not_found  (also a ModelError)
    └── ModelError                      rs-embed's ModelError: the base of the four above

``ModelError`` is a base the face's concrete errors also derive from (rs-embed raises it for unknown
models, invalid request arguments and models that cannot run); each keeps the code of its omniembed
parent, so the HTTP faces and the CLI report them as before.
"""

from __future__ import annotations

from omniembed.errors import ModelLoadFailed, ModelNotFound, OmniEmbedError, ParameterInvalid, WeightsNotFound

__all__ = ["ModelError", "ModelLoadError", "ModelRequestInvalid", "ModelWeightsMissing", "SpecError", "UnknownModel",
           "model_error"]


class SpecError(ParameterInvalid):
    """A spec (``BBox``, ``PointBuffer``, ``TemporalSpec``, ``OutputSpec``, ...) is invalid: rs-embed's
    ``SpecError``. Its ``param`` names the field to change."""


class ModelError(OmniEmbedError):
    """rs-embed's ``ModelError``: the model cannot serve the request as given. Raised as one of its
    subclasses, which also derive from the matching omniembed error."""


class ModelRequestInvalid(ModelError, ParameterInvalid):
    """An argument of the call is invalid for this model (``parameter_invalid``)."""


class UnknownModel(ModelError, ModelNotFound):
    """No such model (``model_not_found``)."""


class ModelLoadError(ModelError, ModelLoadFailed):
    """The model's weights were found but could not be loaded (``model_load_failed``)."""


class ModelWeightsMissing(ModelError, WeightsNotFound):
    """The model's weights are not available here (``weights_not_found``)."""


def model_error(exc: OmniEmbedError) -> OmniEmbedError:
    """``exc`` as a ``ModelError`` too (same message, param, index and code), unless it already is one or is
    not about the model (input and backend errors stay as they are)."""
    if isinstance(exc, ModelError):
        return exc
    for base, cls in ((ModelNotFound, UnknownModel), (ModelLoadFailed, ModelLoadError),
                      (WeightsNotFound, ModelWeightsMissing)):
        if isinstance(exc, base):
            message = exc.message if base is not ModelNotFound or exc.message.startswith("Unknown model") \
                else f"Unknown model: {exc.message}"
            out: OmniEmbedError = cls(message, param=exc.param, index=exc.index, incident=exc.incident)
            out.__cause__ = exc.__cause__
            return out
    return exc
