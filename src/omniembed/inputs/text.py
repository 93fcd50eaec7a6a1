"""Text inputs: type, emptiness, Unicode and size checks; an error carries the offending item's index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from omniembed.contract import TRUNCATE_MODES, Options, Prepared
from omniembed.embedding import InputInfo
from omniembed.errors import InputTooLarge, InputUnreadable, OmniEmbedError, ParameterInvalid

__all__ = ["TRUNCATE_MODES", "TokenizerPreparer", "check_text", "check_truncate"]



def check_truncate(truncate: Any) -> str:
    """The truncation mode, as TwelveLabs defines them: ``end`` (default, also for None), ``start`` or
    ``none``; checked as ``Options`` checks it."""
    return Options(truncate=truncate).truncate


def check_text(value: Any, index: int | None, max_chars: int) -> str:
    """A non-empty string of valid Unicode, at most ``max_chars`` characters, or a coded error for the item."""
    where = "the text"
    if value is None:
        raise ParameterInvalid(f"{where} is None; expected a non-empty string", param="text", index=index)
    if not isinstance(value, str):
        raise ParameterInvalid(
            f"{where} is a {type(value).__name__}; expected a string", param="text", index=index
        )
    if not value.strip():
        raise ParameterInvalid(
            f"{where} is empty or only whitespace; expected text to embed", param="text", index=index
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800") is not text; tokenizers raise TypeError
        raise InputUnreadable(
            f"{where} is not valid Unicode: it holds a lone surrogate (U+{ord(value[exc.start]):04X}) at "
            f"character {exc.start}. Send UTF-8 text; in JSON, surrogates must come in pairs.",
            param="text",
            index=index,
        ) from None
    if len(value) > max_chars:
        raise InputTooLarge(
            f"{where} has {len(value):,} characters; the limit is {max_chars:,} "
            "(OMNIEMBED_MAX_TEXT_CHARS). Split the text or raise the limit.",
            param="text",
            index=index,
        )
    return value


class TokenizerPreparer:
    """Validates texts and tokenises them with a Hugging Face fast tokenizer, in one batch call.

    Truncation follows TwelveLabs: ``end`` keeps the beginning, ``start`` keeps the end, ``none``
    makes a too-long text a ``parameter_invalid`` error that names the limit. Special tokens count
    towards ``max_tokens``.
    """

    counts_tokens = True
    """Item lengths are token counts: the pipeline caps encoder batches in padded tokens."""

    def __init__(
        self,
        tokenizer: Any,
        max_tokens: int,
        max_chars: int,
        input_names: tuple[str, ...],
        max_batch_tokens: int | None = None,
    ) -> None:
        import copy

        self.tokenizer = tokenizer
        self.left_tokenizer = copy.deepcopy(tokenizer)
        self.left_tokenizer.truncation_side = "left"
        tokenizer.truncation_side = "right"
        self.max_tokens = max_tokens
        self.max_chars = max_chars
        self.input_names = input_names
        self.max_batch_tokens = max_batch_tokens
        """Encoder batches hold at most this many padded tokens (None: the encoder's own best; see
        ``pipeline._batches``)."""
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    def contract(self, options: Any) -> str:
        kind = type(self.tokenizer).__name__
        return f"{kind}; max_tokens={self.max_tokens}; truncate={options.truncate}"

    def _tokenize(self, texts: list[str], truncate: str) -> list[list[int]]:
        if not texts:
            return []
        tok = self.left_tokenizer if truncate == "start" else self.tokenizer
        if truncate == "none":
            enc = tok(texts, add_special_tokens=True, truncation=False, verbose=False)
        else:
            enc = tok(texts, add_special_tokens=True, truncation=True, max_length=self.max_tokens)
        ids: list[list[int]] = enc["input_ids"]
        return ids

    def prepare(self, items: Sequence[Any], options: Any) -> list[Any]:
        out: list[Any] = [None] * len(items)
        good: list[int] = []
        for i, item in enumerate(items):
            try:
                out[i] = check_text(item, i, self.max_chars)
                good.append(i)
            except OmniEmbedError as exc:
                out[i] = exc
        texts = [out[i] for i in good]
        ids = self._tokenize(texts, options.truncate)
        # Which texts were cut: re-count only the texts that hit the limit, without truncation.
        full = {}
        if options.truncate != "none":
            at_limit = [k for k, seq in enumerate(ids) if len(seq) >= self.max_tokens]
            counted = self._tokenize([texts[k] for k in at_limit], "none")
            full = {k: len(seq) for k, seq in zip(at_limit, counted, strict=True)}
        for k, i in enumerate(good):
            seq = ids[k]
            n_full = full.get(k, len(seq))
            if len(seq) > self.max_tokens:
                out[i] = ParameterInvalid.naming(  # what to change: the text, or truncation (named by param)
                    f"the text is {len(seq)} tokens long; the model's limit is {self.max_tokens} tokens. "
                    "Shorten it or set {param} to end or start.",
                    param="truncate",
                    index=i,
                )
                continue
            text = texts[k]
            info = InputInfo(
                kind="text",
                description=text[:80] + ("..." if len(text) > 80 else ""),
                length=len(seq),
                truncated=n_full > len(seq),
            )
            out[i] = Prepared({"input_ids": np.asarray(seq, np.int64)}, len(seq), info)
        return out

    def collate(self, batch: Sequence[Any]) -> dict[str, np.ndarray]:
        width = max(p.length for p in batch)
        ids = np.full((len(batch), width), self.pad_id, np.int64)
        mask = np.zeros((len(batch), width), np.int64)
        for row, p in enumerate(batch):
            ids[row, : p.length] = p.features["input_ids"]
            mask[row, : p.length] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return feeds
