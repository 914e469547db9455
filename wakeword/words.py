"""Word targets for the auxiliary word loss (``train.loss.word_weight``): for every training window, whether
each word of the wake phrase was said in it ("hey" and "jarvis" for "hey jarvis").

A confusable phrase is a negative for the main head whichever word is wrong. The word heads say which: "hey
starvis" has the first word and not the second, "pey jarvis" the second and not the first. Trained beside the
main head on the shared embedding, they push the embedding to represent each word on its own.

Targets come from the clips' manifest texts (the feature store keeps each window's source row, ``clip``):
1 where the word is one of the text's tokens, 0 where it is not, -1 (unknown, no loss) where it cannot be
told. Rules, per window:

* positive: every word 1 (a positive contains the phrase, with or without a text);
* background: every word 0 (no speech);
* partial (the first 30-60% of a positive): unknown, the cut may fall inside any word;
* negative and hard_negative with a text: the text's words, except that a word the text has is unknown when
  the clip is longer than the window (featurize takes a random crop, which may leave the word out);
* no text (own audio), no source row (mined stream windows): unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from wakeword.featureset import KIND_CODES
from wakeword.manifest import Item, read_manifest
from wakeword.text import tokens

UNKNOWN = -1


class WordTargetError(ValueError):
    """Word targets cannot be made for these windows."""


def phrase_words(phrase: str) -> list[str]:
    """The distinct words of the phrase in order of first appearance (one head each)."""
    words = list(dict.fromkeys(tokens(phrase)))
    if not words:
        raise WordTargetError(f"phrase {phrase!r} has no words")
    return words


def clip_word_targets(items: list[Item], phrase: str, window_s: float) -> np.ndarray:
    """``(len(items), n_words)`` int8 targets of every manifest row, by the rules of the module docstring
    (rows of other kinds, such as streams, are unknown)."""
    words = phrase_words(phrase)
    out = np.full((len(items), len(words)), UNKNOWN, dtype=np.int8)
    for row, item in enumerate(items):
        if item.kind == "positive":
            out[row] = 1
        elif item.kind == "background":
            out[row] = 0
        elif item.kind in ("negative", "hard_negative") and item.text.strip():
            said = set(tokens(item.text))
            cropped = item.duration_s > window_s
            out[row] = [(UNKNOWN if cropped else 1) if w in said else 0 for w in words]
    return out


def training_word_targets(split_dir: Path, phrase: str, window_s: float) -> Callable[[np.ndarray, np.ndarray],
                                                                                    np.ndarray]:
    """``(clip rows, kind codes) -> targets`` of training windows: :func:`window_word_targets` over the
    :func:`clip_word_targets` of ``split_dir/train.jsonl`` (the rows the feature store's training windows
    point to)."""
    path = Path(split_dir) / "train.jsonl"
    table = clip_word_targets(read_manifest(path), phrase, window_s)
    return lambda clip, kind: window_word_targets(table, clip, kind, str(path))


def window_word_targets(table: np.ndarray, clip: np.ndarray, kind: np.ndarray, where: str = "") -> np.ndarray:
    """``(N, n_words)`` int8 targets of windows with source rows ``clip`` (-1: none) and kind codes ``kind``,
    from a :func:`clip_word_targets` table. ``where`` names the data in errors."""
    clip = np.asarray(clip, dtype=np.int64)
    kind = np.asarray(kind)
    if clip.shape != kind.shape:
        raise WordTargetError(f"{where}: {clip.shape[0]} source rows for {kind.shape[0]} windows")
    if clip.size and clip.max() >= table.shape[0]:
        raise WordTargetError(f"{where}: a window's source row {int(clip.max())} is past the manifest's "
                              f"{table.shape[0]} rows; the features were made from another split (re-run featurize)")
    out = np.full((clip.shape[0], table.shape[1]), UNKNOWN, dtype=np.int8)
    known = clip >= 0
    out[known] = table[clip[known]]
    out[kind == KIND_CODES["positive"]] = 1
    out[kind == KIND_CODES["background"]] = 0
    out[kind == KIND_CODES["partial"]] = UNKNOWN
    return out
