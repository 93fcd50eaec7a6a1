"""omniembed: one engine that turns text (and, as it grows, images, audio and Earth-observation
regions) into embedding vectors, behind a Python API, a CLI and an HTTP server.

    >>> import omniembed
    >>> e = omniembed.embed("minilm", text="a cat sits on the mat")
    >>> e.data.shape, e.meta.normalized
    ((384,), True)

Importing omniembed imports no ML library; models load on first use.
"""

from omniembed.api import Engine, configure, describe_model, embed, embed_batch, get_engine, list_models
from omniembed.client import Client
from omniembed.contract import Options
from omniembed.embedding import Embedding, EmbeddingMeta, InputInfo, Modality, Segment, Timings
from omniembed.errors import (
    BackendAuthFailed,
    EmbeddingNotFinite,
    InputError,
    InputTooLarge,
    InputUnreadable,
    InternalError,
    ModelLoadFailed,
    ModelNotFound,
    OmniEmbedError,
    ParameterError,
    ParameterInvalid,
    ParameterNotProvided,
    RuntimeUnavailable,
    WeightsNotFound,
)
from omniembed.registry import ModelSpec, Registry, WeightsSource
from omniembed.settings import Settings
from omniembed.version import __version__
from omniembed.weights import fingerprint as weights_fingerprint

__all__ = [
    "BackendAuthFailed",
    "Client",
    "Embedding",
    "EmbeddingMeta",
    "EmbeddingNotFinite",
    "Engine",
    "InputError",
    "InputInfo",
    "InputTooLarge",
    "InputUnreadable",
    "InternalError",
    "Modality",
    "ModelLoadFailed",
    "ModelNotFound",
    "ModelSpec",
    "OmniEmbedError",
    "Options",
    "ParameterError",
    "ParameterInvalid",
    "ParameterNotProvided",
    "Registry",
    "RuntimeUnavailable",
    "Segment",
    "Settings",
    "Timings",
    "WeightsNotFound",
    "WeightsSource",
    "__version__",
    "configure",
    "describe_model",
    "embed",
    "embed_batch",
    "get_engine",
    "list_models",
    "weights_fingerprint",
]
