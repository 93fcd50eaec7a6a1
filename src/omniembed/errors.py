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
    └── InputError
        ├── InputUnreadable             input_unreadable
        └── InputTooLarge               input_too_large

Catch at any level: ``except InputError`` catches both unreadable and too-large inputs. Errors about
one item of a batch carry its ``index``.
"""

from __future__ import annotations

__all__ = [
    "InputError",
    "InputTooLarge",
    "InputUnreadable",
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

    def __init__(self, message: str, *, param: str | None = None, index: int | None = None) -> None:
        self.message = message
        self.param = param
        self.index = index
        super().__init__(message)

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def at_index(self, index: int) -> OmniEmbedError:
        """Return a copy of this error that names the batch item it belongs to."""
        prefix = f"item {index}: "
        message = self.message if self.message.startswith(prefix) else prefix + self.message
        return type(self)(message, param=self.param, index=index)

    def to_dict(self) -> dict[str, object]:
        """The error as plain data (what the CLI and the HTTP faces print)."""
        out: dict[str, object] = {"code": self.code, "message": self.message}
        if self.param is not None:
            out["param"] = self.param
        if self.index is not None:
            out["index"] = self.index
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


class InputError(OmniEmbedError):
    """An input item cannot be embedded."""

    code = "input_unreadable"


class InputUnreadable(InputError):
    """An input item cannot be decoded or read."""

    code = "input_unreadable"


class InputTooLarge(InputError):
    """An input item exceeds a configured size limit."""

    code = "input_too_large"
