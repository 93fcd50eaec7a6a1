"""The omniembed error tree.

Every error omniembed raises on purpose derives from one root, carries a stable machine-readable
``code`` (the same string the HTTP faces answer with) and a message that says what to change::

    OmniEmbedError                      internal_error
    ├── ParameterError
    │   ├── ParameterInvalid            parameter_invalid
    │   └── ParameterNotProvided        parameter_not_provided
    ├── ModelNotFound                   model_not_found
    ├── WeightsNotFound                 weights_not_found
    ├── ModelLoadFailed                 model_load_failed
    ├── RuntimeUnavailable              runtime_unavailable
    │   └── BackendAuthFailed           backend_auth_failed (a remote raster source refused the credentials)
    ├── InternalError                   internal_error (with an incident id in the log)
    └── InputError
        ├── InputUnreadable             input_unreadable
        └── InputTooLarge               input_too_large

Catch at any level: ``except InputError`` catches both unreadable and too-large inputs.

Errors carry structure, not text. An error about one item of a batch carries its position in the
``index`` field, never in its message: whoever splits a batch sets it (``at_index``) and translates it
back to the caller's own numbering (``shifted``), and each face formats it in its client's terms (OpenAI
``input[i]``, a CLI line number, an export's region id). ``InternalError.from_exception`` turns an
unexpected exception into a coded error with an ``incident`` id that is logged with the traceback and
shown to the client.
"""

from __future__ import annotations

import copy
import logging
import uuid

__all__ = [
    "BackendAuthFailed",
    "InputError",
    "InputTooLarge",
    "InputUnreadable",
    "InternalError",
    "ModelLoadFailed",
    "ModelNotFound",
    "OmniEmbedError",
    "ParameterError",
    "ParameterInvalid",
    "ParameterNotProvided",
    "RuntimeUnavailable",
    "WeightsNotFound",
]


class OmniEmbedError(Exception):
    """Root of every error omniembed raises on purpose."""

    code: str = "internal_error"

    def __init__(
        self, message: str, *, param: str | None = None, index: int | None = None, incident: str | None = None
    ) -> None:
        self.message = message
        self.param = param
        self.index = index
        self.incident = incident
        super().__init__(message)

    def __str__(self) -> str:
        where = f" (item {self.index})" if self.index is not None else ""
        return f"[{self.code}]{where} {self.message}"

    def at_index(self, index: int | None) -> OmniEmbedError:
        """A copy of this error that names the batch item it belongs to (the message is unchanged)."""
        out = copy.copy(self)
        out.index = index
        return out

    def shifted(self, offset: int) -> OmniEmbedError:
        """A copy whose index is moved by ``offset`` (a chunk's error, renumbered for the whole call)."""
        return self if self.index is None or not offset else self.at_index(self.index + offset)

    def to_dict(self) -> dict[str, object]:
        """The error as plain data (what the CLI and the HTTP faces print)."""
        out: dict[str, object] = {"code": self.code, "message": self.message}
        for key in ("param", "index", "incident"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


class ParameterError(OmniEmbedError):
    """A call parameter is wrong or missing."""

    code = "parameter_invalid"


class ParameterInvalid(ParameterError):
    """A parameter has a value omniembed cannot use."""

    code = "parameter_invalid"


class ParameterNotProvided(ParameterError):
    """A required parameter was not given."""

    code = "parameter_not_provided"


class ModelNotFound(OmniEmbedError):
    """No registered model, alias, local directory or reachable hub id has this name."""

    code = "model_not_found"


class WeightsNotFound(OmniEmbedError):
    """The model is known, but its weights are in none of the places omniembed looked."""

    code = "weights_not_found"


class ModelLoadFailed(OmniEmbedError):
    """The weights were found but could not be loaded (corrupt or incompatible files)."""

    code = "model_load_failed"


class RuntimeUnavailable(OmniEmbedError):
    """The requested runtime, device or optional dependency is not available here."""

    code = "runtime_unavailable"


class BackendAuthFailed(RuntimeUnavailable):
    """A remote raster backend (Earth Engine) refused this machine's credentials or has no Cloud project to
    bill: the message says how to authenticate and which project setting to set."""

    code = "backend_auth_failed"


class InputError(OmniEmbedError):
    """An input item cannot be embedded."""

    code = "input_unreadable"


class InputUnreadable(InputError):
    """An input item cannot be decoded or read."""

    code = "input_unreadable"


class InputTooLarge(InputError):
    """An input item exceeds a configured size limit."""

    code = "input_too_large"


class InternalError(OmniEmbedError):
    """Something failed that omniembed did not expect: a defect. The traceback is in the log under
    ``incident``, which the message also shows, so a client's report can be matched to it."""

    code = "internal_error"

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
        return cls(message, index=index, incident=incident)
