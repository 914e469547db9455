"""Text generation: negatives never hold the wake phrase, confusables exist for any phrase."""

from __future__ import annotations

import re

import numpy as np
import pytest

from wakeword import text as T

PHRASES = ["hey jarvis", "okay nova", "hey", "turn on the light"]


def _independent_contains(text: str, phrase: str) -> bool:
    """Reference check written separately from the library: word sequence or glued form of the phrase."""
    words = re.findall(r"[a-z0-9]+", text.lower().replace("'", ""))
    target = re.findall(r"[a-z0-9]+", phrase.lower().replace("'", ""))
    n = len(target)
    if any(words[i:i + n] == target for i in range(len(words) - n + 1)):
        return True
    glued = "".join(target)
    # any run of consecutive words that glues to the phrase ("heyjarvis", "hey jar vis")
    for i in range(len(words)):
        for j in range(i + 1, len(words) + 1):
            if "".join(words[i:j]) == glued:
                return True
    return False


def test_vocabulary_is_a_few_hundred_words() -> None:
    assert len(T.VOCABULARY) >= 300
    assert all(re.fullmatch(r"[a-z]+", w) for w in T.VOCABULARY)


@pytest.mark.parametrize("phrase", PHRASES)
def test_negative_text_never_contains_phrase(phrase: str) -> None:
    for seed in range(40):
        rng = np.random.default_rng(seed)
        for text in T.negative_texts(phrase, 50, rng):
            assert not _independent_contains(text, phrase), (seed, text)
            assert not T.contains_phrase(text, phrase)


def test_negative_text_shapes_and_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = [len(T.tokens(t)) for t in T.negative_texts("hey jarvis", 2000, rng)]
    assert min(lengths) >= 1 and max(lengths) <= 15
    assert lengths.count(1) > 100  # single words
    assert sum(2 <= n <= 3 for n in lengths) > 200  # short phrases
    assert sum(n >= 8 for n in lengths) > 200  # real sentences


def test_negative_text_is_deterministic() -> None:
    a = T.negative_texts("hey jarvis", 100, np.random.default_rng(7))
    b = T.negative_texts("hey jarvis", 100, np.random.default_rng(7))
    assert a == b


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hey, Jarvis!", True),
        ("HEYJARVIS", True),
        ("hey jar vis", True),
        ("well hey jarvis please", True),
        ("they jarvis", False),
        ("hey there jarvis", False),
        ("jarvis hey", False),
        ("hey", False),
    ],
)
def test_contains_phrase(text: str, expected: bool) -> None:
    assert T.contains_phrase(text, "hey jarvis") is expected


@pytest.mark.parametrize("phrase", ["hey jarvis", "okay nova", "computer", "alexa turn on", "Hey Mycroft"])
def test_confusables_exist_for_any_phrase(phrase: str) -> None:
    out = T.confusable_phrases(phrase, np.random.default_rng(0))
    assert len(out) >= 30
    assert len(out) == len(set(out))
    norm = T.normalize_text(phrase)
    for c in out:
        assert T.normalize_text(c) == c
        assert c != norm
        assert not _independent_contains(c, phrase), c
    words = T.tokens(phrase)
    if len(words) > 1:
        assert set(words) <= set(out)  # each word alone


def test_confusable_families_for_hey_jarvis() -> None:
    out = set(T.confusable_phrases("hey jarvis", np.random.default_rng(0)))
    for expected in ["hey marvis", "hey travis", "hey harvis", "hey jervis", "jarvis hey", "they jarvis", "hey jar"]:
        assert expected in out, expected
    assert "ey jarvis" not in out  # h-dropping is an accent, not a different phrase


def test_confusable_families_for_okay_nova() -> None:
    out = set(T.confusable_phrases("okay nova", np.random.default_rng(0)))
    for expected in ["okay", "nova", "nova okay", "okay mova", "okay neva"]:
        assert expected in out, expected


def test_confusables_deterministic_and_homophone_filter() -> None:
    a = T.confusable_phrases("hey jarvis", np.random.default_rng(3))
    b = T.confusable_phrases("hey jarvis", np.random.default_rng(3))
    assert a == b
    assert "hay jarvis" in a

    def fake_phonemes(s: str) -> str:
        return s.replace("hay", "hey")

    filtered = T.confusable_phrases("hey jarvis", np.random.default_rng(3), same_sound=fake_phonemes)
    assert "hay jarvis" not in filtered
    assert len(filtered) == len(a) - 1


def test_spelling_variants_are_the_phrase() -> None:
    variants = T.spelling_variants("hey jarvis")
    assert "Hey, Jarvis!" in variants and "hey jarvis?" in variants
    assert len(variants) == len(set(variants)) >= 8
    for v in variants:
        assert T.normalize_text(v) == "hey jarvis"
        assert T.contains_phrase(v, "hey jarvis")
    single = T.spelling_variants("computer")
    assert all(T.normalize_text(v) == "computer" for v in single)


def test_confusables_get_the_phrases_spellings_and_context_words() -> None:
    """The same spellings (commas, capitals, '?' / '!') and context words for any text: a confusable is read with
    the pauses and intonation a positive is."""
    phrase = [v.replace("Jarvis", "X").replace("jarvis", "x") for v in T.spelling_variants("hey jarvis")]
    conf = [v.replace("Warvis", "X").replace("warvis", "x") for v in T.spelling_variants("hey warvis")]
    assert conf == phrase  # the same spelling patterns, in the same order
    assert "Hey, Warvis!" in T.spelling_variants("hey warvis") and "hey, warvis?" in T.spelling_variants("hey warvis")
    for seed in range(50):  # the same rng draws give the same frame around either text
        a = T.with_context_words("hey jarvis", np.random.default_rng(seed))
        b = T.with_context_words("hey warvis", np.random.default_rng(seed))
        assert a.lower().replace("jarvis", "warvis") == b.lower()
        assert T.contains_phrase(a, "hey jarvis")
        assert T.tokens(b)[0] in {"hey"} | set(T.CONTEXT_BEFORE) and "warvis" in T.tokens(b)
        assert not T.contains_phrase(b, "hey jarvis")


def test_empty_phrase_rejected() -> None:
    with pytest.raises(ValueError, match="no letters"):
        T.confusable_phrases("!!", np.random.default_rng(0))
