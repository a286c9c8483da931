"""CLIP's byte-pair-encoding tokenizer (OpenAI's 49,408-token vocabulary), as shipped in
open_clip: mmgen wraps ``open_clip.tokenizer.SimpleTokenizer`` instead of re-implementing BPE.

Each text becomes ``[<start_of_text>=49406, ...BPE ids..., <end_of_text>=49407, pad, ...]``
of exactly ``context_length`` ids. A text that does not fit is cut so that its last id is
still ``<end_of_text>`` (as open_clip does), and a warning says how many texts were cut.

    tokens = tokenize(["a photo of a cat", "a dog"])            # (2, 77) LongTensor
    tokenizer = CLIPTokenizer(context_length=32); tokenizer(texts)
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

DEFAULT_CONTEXT_LENGTH = 77  # OpenAI CLIP's text context
SOT_TOKEN_ID = 49406  # <start_of_text>
EOT_TOKEN_ID = 49407  # <end_of_text>
# The id after the end of text: 0 in OpenAI's and open_clip's tokenizers (Stable Diffusion
# 1.x's pads with EOT_TOKEN_ID instead; its folder says so and the pipeline reads it there).
PAD_TOKEN_ID = 0


@functools.lru_cache(maxsize=1)
def _bpe() -> Any:
    """open_clip's SimpleTokenizer, built once (reading the vocabulary takes ~1 s)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "mmgen's CLIP tokenizer wraps open_clip's BPE tokenizer, which is not installed; "
            "install it with `pip install open_clip_torch`")
    # `import open_clip` imports all of its models (seconds); its tokenizer module stands
    # alone (third-party imports only, vocabulary file beside it), so load just that file.
    path = Path(spec.submodule_search_locations[0]) / "tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("_mmgen_open_clip_tokenizer", path)
    if module_spec is None or module_spec.loader is None:  # an unusual installation
        from open_clip.tokenizer import SimpleTokenizer

        return SimpleTokenizer()
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.SimpleTokenizer()


class CLIPTokenizer:
    """Texts -> (N, context_length) token ids for CLIP text towers.

    Args:
        context_length: ids per text; the model's ``TextConfig.context_length``.
        pad_token_id: id after the end of text. 0 as in OpenAI/open_clip; Stable Diffusion
            1.x's tokenizer pads with <end_of_text> (49407), which changes the per-token
            hidden states after the text (not the pooled embedding).
    """

    def __init__(self, context_length: int = DEFAULT_CONTEXT_LENGTH,
                 pad_token_id: int = PAD_TOKEN_ID):
        if context_length < 2:
            raise ValueError(f"context_length must be >= 2 (start and end tokens), "
                             f"got {context_length}")
        self.context_length = context_length
        self.pad_token_id = pad_token_id
        self.sot_token_id = SOT_TOKEN_ID
        self.eot_token_id = EOT_TOKEN_ID

    @property
    def vocab_size(self) -> int:
        return _bpe().vocab_size

    def encode(self, text: str) -> list[int]:
        """BPE ids of one text, without start/end tokens (lower-cased, whitespace-cleaned)."""
        return _bpe().encode(text)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text of token ids; start, end and padding ids are dropped."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        special = {self.sot_token_id, self.eot_token_id, self.pad_token_id}
        return _bpe().decode([i for i in ids if i not in special]).strip()

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Token ids (N, context_length) of ``texts`` (a str counts as one text).

        Texts longer than the context are truncated, keeping <end_of_text> as the last id,
        with a ``UserWarning`` naming how many were.
        """
        tokens, truncated = self.tokenize_counting(texts)
        _warn_truncated(truncated, len(tokens), self.context_length)
        return tokens

    def tokenize_counting(self, texts: str | Sequence[str]) -> tuple[torch.Tensor, int]:
        """Token ids (N, context_length) and the number of truncated texts, without warning."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        length = self.context_length
        out = torch.full((len(texts), length), self.pad_token_id, dtype=torch.long)
        truncated = 0
        for i, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(ids) > length:
                ids = ids[: length - 1] + [self.eot_token_id]
                truncated += 1
            out[i, : len(ids)] = torch.tensor(ids)
        return out, truncated


def tokenize(texts: str | Sequence[str],
             context_length: int = DEFAULT_CONTEXT_LENGTH) -> torch.Tensor:
    """Token ids (N, context_length) of ``texts``; see :class:`CLIPTokenizer`.

    Args:
        texts: one text or a sequence of texts.
        context_length: ids per text (the model's ``TextConfig.context_length``).
    """
    tokens, truncated = CLIPTokenizer(context_length).tokenize_counting(texts)
    _warn_truncated(truncated, len(tokens), context_length)
    return tokens


def _warn_truncated(truncated: int, total: int, context_length: int) -> None:
    if truncated:
        warnings.warn(  # stacklevel 3: the line that called tokenize() / the tokenizer
            f"{truncated} of {total} text(s) were longer than the context of {context_length} "
            "tokens and were truncated (the end-of-text token is kept)", stacklevel=3)
