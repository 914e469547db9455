"""Deterministic text for synthetic speech: negative sentences, confusable phrases, positive variants.

Everything here is pure Python driven by a ``numpy.random.Generator`` so the data set is reproducible and
needs no network or corpus. Three products:

* :func:`negative_text` / :func:`negative_texts`: single words, short phrases and 3-15 word sentences from
  a built-in vocabulary, guaranteed never to contain the wake phrase (:func:`contains_phrase`).
* :func:`confusable_phrases`: hard negatives derived mechanically from *any* phrase (partial phrases,
  onset/vowel substitutions, swaps, rhymes), never equal to or containing the phrase itself.
* :func:`spelling_variants` / :func:`with_context_words`: spellings of the phrase (or of any text) that
  change how a TTS engine reads it (capitals, commas, question/exclamation intonation), and short words
  around it; the same for the phrase and its confusables.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence

import numpy as np

# ----------------------------------------------------------------------------------------------------------
# Vocabulary (common English words by rough part of speech; a few hundred in all)
# ----------------------------------------------------------------------------------------------------------

NOUNS: tuple[str, ...] = tuple("""
time year people way day man woman child world life hand part place case week company system program
question work government number night point home water room mother father area money story fact month
lot right study book eye job word business issue side kind head house service friend power hour game line
end member law car city community name president team minute idea kid body information back parent face
others level office door health person art war history party result change morning reason research girl
guy moment air teacher force education foot boy age policy music market sense nation plan college interest
death experience effect class control care field development role effort rate heart drug show leader light
voice wife police mind price report decision son view relationship town road arm difference value building
action model season society tax director position player record paper space ground form event official
matter center couple site project activity star table need court oil situation cost industry figure street
image phone data picture practice piece land product doctor wall patient worker news test movie north love
kitchen window garden coffee dinner breakfast lunch weather rain snow sun tree river bread milk cheese
apple orange train bus bike computer screen keyboard letter box bottle glass chair bed dog cat bird fish
horse song film camera ticket station airport hotel restaurant shop store bank school hospital church
bridge mountain island beach ocean lake forest desert farm village country map plane boat ship
""".split())  # noqa: SIM905 - a word block reads better than a list literal

VERBS_BASE: tuple[str, ...] = tuple("""
be have do say go get make know think take see come want look use find give tell work call try ask need
feel become leave put mean keep let begin seem help talk turn start show hear play run move like live
believe hold bring happen write provide sit stand lose pay meet include continue set learn change lead
understand watch follow stop create speak read allow add spend grow open walk win offer remember love
consider appear buy wait serve die send expect build stay fall cut reach kill remain suggest raise pass
sell require report decide pull cook clean drive fly swim sing dance sleep eat drink carry close fix wash
paint draw count check print order pick share visit travel finish answer explain
""".split())  # noqa: SIM905 - a word block reads better than a list literal

VERBS_PAST: tuple[str, ...] = tuple("""
was had did said went got made knew thought took saw came wanted looked used found gave told worked called
tried asked needed felt became left put meant kept let began seemed helped talked turned started showed
heard played ran moved liked lived believed held brought happened wrote sat stood lost paid met learned
changed led understood watched followed stopped created spoke read added spent grew opened walked won
offered remembered loved bought waited built stayed fell cut reached raised passed sold decided pulled
cooked cleaned drove flew swam sang danced slept ate drank carried closed fixed washed painted drew counted
checked printed ordered picked shared visited traveled finished answered explained
""".split())  # noqa: SIM905 - a word block reads better than a list literal

ADJECTIVES: tuple[str, ...] = tuple("""
good new first last long great little own other old right big high different small large next early young
important few public bad same able late hard major better best real sure free whole clear full special easy
strong certain true ready simple cold hot warm cool dark bright quiet loud happy sad busy empty heavy light
short tall fast slow clean dirty fresh green blue red yellow black white brown open closed cheap expensive
quick nice wonderful strange funny lucky safe
""".split())  # noqa: SIM905 - a word block reads better than a list literal

ADVERBS: tuple[str, ...] = tuple("""
now then here there again also still already often never always sometimes today tomorrow yesterday soon
later really very quite almost together outside inside away maybe probably quickly slowly finally early
""".split())  # noqa: SIM905 - a word block reads better than a list literal

PRONOUNS_SUBJ: tuple[str, ...] = ("i", "you", "we", "they", "he", "she", "it", "everyone", "nobody", "somebody")
PRONOUNS_OBJ: tuple[str, ...] = ("me", "you", "us", "them", "him", "her", "it", "everything", "something")
DETERMINERS: tuple[str, ...] = ("the", "a", "this", "that", "my", "your", "our", "their", "his", "her", "every",
                                "some", "one", "another", "no")
PREPOSITIONS: tuple[str, ...] = ("in", "on", "at", "from", "with", "for", "about", "near", "under", "over",
                                 "after", "before", "behind", "into", "through", "without", "around", "across")
CONJUNCTIONS: tuple[str, ...] = ("and", "but", "because", "so", "while", "although", "when", "if", "or")
MODALS: tuple[str, ...] = ("can", "could", "will", "would", "should", "might", "must")
INTERJECTIONS: tuple[str, ...] = ("hey", "oh", "well", "okay", "yes", "no", "hello", "hi", "wow", "sorry",
                                  "thanks", "please", "right", "sure", "alright", "hmm")
NUMBERS: tuple[str, ...] = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                            "twenty", "fifty", "hundred")

VOCABULARY: tuple[str, ...] = tuple(sorted(set(
    NOUNS + VERBS_BASE + VERBS_PAST + ADJECTIVES + ADVERBS + PRONOUNS_SUBJ + PRONOUNS_OBJ + DETERMINERS
    + PREPOSITIONS + CONJUNCTIONS + MODALS + INTERJECTIONS + NUMBERS
)))
"""Every built-in word, sorted (used for rhyme neighbours and single-word negatives)."""

_QUESTION_STARTS: tuple[str, ...] = ("can you", "could you", "would you", "did you", "do you", "will you",
                                     "should we", "can we", "why did", "when will", "where is", "what is")

# ----------------------------------------------------------------------------------------------------------
# Normalisation and the phrase check
# ----------------------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"[a-z0-9]+")


def normalize_text(text: str) -> str:
    """Lower-case, drop apostrophes, turn every other non-alphanumeric run into one space."""
    return " ".join(tokens(text))


def tokens(text: str) -> list[str]:
    """Word tokens as a TTS engine would group them: case and punctuation removed (``don't`` -> ``dont``)."""
    return _TOKEN_RE.findall(text.lower().replace("'", "").replace("\u2019", ""))


def contains_phrase(text: str, phrase: str) -> bool:
    """True if ``text`` contains the wake phrase, ignoring case, punctuation and how words are split.

    The phrase with spaces removed is compared with every concatenation of consecutive tokens of the
    text, so ``"Hey, Jarvis!"``, ``"heyjarvis"`` and ``"hey jar vis"`` all count, while ``"they jarvis"``
    (a legitimate confusable: different onset) does not: matches must start and end on word boundaries.
    """
    target = "".join(tokens(phrase))
    if not target:
        raise ValueError(f"phrase {phrase!r} has no letters")
    toks = tokens(text)
    for i in range(len(toks)):
        acc = ""
        for tok in toks[i:]:
            acc += tok
            if len(acc) >= len(target):
                if acc == target:
                    return True
                break
    return False


def _is_phrase(text: str, phrase: str) -> bool:
    return "".join(tokens(text)) == "".join(tokens(phrase))


# ----------------------------------------------------------------------------------------------------------
# Negative sentences
# ----------------------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, words: Sequence[str]) -> str:
    return words[int(rng.integers(len(words)))]


def _noun_phrase(rng: np.random.Generator) -> list[str]:
    r = rng.random()
    if r < 0.2:
        return [_pick(rng, PRONOUNS_OBJ)]
    words = [_pick(rng, DETERMINERS)]
    if rng.random() < 0.45:
        words.append(_pick(rng, ADJECTIVES))
    words.append(_pick(rng, NOUNS))
    if rng.random() < 0.2:
        words += [_pick(rng, PREPOSITIONS), _pick(rng, ("the", "a", "my", "our")), _pick(rng, NOUNS)]
    return words


def _clause(rng: np.random.Generator) -> list[str]:
    """One simple clause; several shapes so prosody varies (statements, questions, commands)."""
    shape = int(rng.integers(6))
    if shape == 0:  # statement in the past
        words = [_pick(rng, PRONOUNS_SUBJ)] if rng.random() < 0.5 else _noun_phrase(rng)
        words += [_pick(rng, VERBS_PAST)] + _noun_phrase(rng)
    elif shape == 1:  # modal statement
        words = [_pick(rng, PRONOUNS_SUBJ), _pick(rng, MODALS), _pick(rng, VERBS_BASE)] + _noun_phrase(rng)
    elif shape == 2:  # question
        words = _pick(rng, _QUESTION_STARTS).split() + [_pick(rng, VERBS_BASE)] + _noun_phrase(rng)
    elif shape == 3:  # command
        words = (["please"] if rng.random() < 0.4 else []) + [_pick(rng, VERBS_BASE)] + _noun_phrase(rng)
    elif shape == 4:  # description
        words = [_pick(rng, DETERMINERS), _pick(rng, NOUNS), _pick(rng, ("is", "was", "looks", "seems", "felt"))]
        words += ([_pick(rng, ("very", "really", "quite", "so"))] if rng.random() < 0.4 else [])
        words.append(_pick(rng, ADJECTIVES))
    else:  # with an adverb / prepositional tail
        words = [_pick(rng, PRONOUNS_SUBJ), _pick(rng, VERBS_PAST), _pick(rng, PREPOSITIONS)] + _noun_phrase(rng)
    if rng.random() < 0.3:
        words.append(_pick(rng, ADVERBS))
    return words


def _sentence(rng: np.random.Generator, n_min: int = 3, n_max: int = 15) -> list[str]:
    """Join clauses until a randomly drawn target length in [n_min, n_max] is reached."""
    target = int(rng.integers(n_min, n_max + 1))
    words: list[str] = []
    if rng.random() < 0.15:
        words.append(_pick(rng, INTERJECTIONS))
    while len(words) < target:
        if words and words[-1] not in INTERJECTIONS:
            words.append(_pick(rng, CONJUNCTIONS))
        words += _clause(rng)
    if len(words) > n_max:
        words = words[:n_max]
        while len(words) > n_min and words[-1] in DETERMINERS + PREPOSITIONS + CONJUNCTIONS + MODALS:
            words.pop()
    return words


def _short_phrase(rng: np.random.Generator) -> list[str]:
    shape = int(rng.integers(5))
    if shape == 0:
        return [_pick(rng, DETERMINERS), _pick(rng, NOUNS)]
    if shape == 1:
        return [_pick(rng, ADJECTIVES), _pick(rng, NOUNS)]
    if shape == 2:
        if rng.random() < 0.4:
            return [_pick(rng, VERBS_BASE), _pick(rng, PRONOUNS_OBJ)]
        return [_pick(rng, VERBS_BASE), _pick(rng, ("the", "a", "my", "this")), _pick(rng, NOUNS)]
    if shape == 3:
        return [_pick(rng, INTERJECTIONS), _pick(rng, ADVERBS)]
    return [_pick(rng, ("very", "so", "not", "really")), _pick(rng, ADJECTIVES)]


def _format(words: list[str], rng: np.random.Generator) -> str:
    """Sentence case and end punctuation: engines change intonation on '?' and '!'."""
    text = " ".join(words)
    if text.split(" ", 1)[0] == "i" or rng.random() < 0.8:
        text = text[0].upper() + text[1:]
    text = re.sub(r"\bi\b", "I", text)
    question = words[0] in {"can", "could", "would", "did", "do", "will", "should", "why", "when", "where", "what"}
    end = "?" if question else _pick(rng, (".", ".", ".", "!", ""))
    return text + end


def negative_text(phrase: str, rng: np.random.Generator, p_word: float = 0.15, p_short: float = 0.25) -> str:
    """One negative utterance: a single word, a 2-3 word phrase, or a 3-15 word sentence.

    Never contains ``phrase`` (checked with :func:`contains_phrase`; a rejected draw is redrawn from the
    same generator, so the output stays a deterministic function of the generator state).
    """
    for _ in range(1000):
        r = rng.random()
        if r < p_word:
            words = [_pick(rng, VOCABULARY)]
        elif r < p_word + p_short:
            words = _short_phrase(rng)
        else:
            words = _sentence(rng)
        text = _format(words, rng)
        if not contains_phrase(text, phrase):
            return text
    raise ValueError(f"could not generate a negative sentence free of the phrase {phrase!r} in 1000 draws")


def negative_texts(phrase: str, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` negative utterances (see :func:`negative_text`)."""
    return [negative_text(phrase, rng) for _ in range(n)]


# ----------------------------------------------------------------------------------------------------------
# Confusable phrases
# ----------------------------------------------------------------------------------------------------------

_VOWELS = "aeiou"
ONSETS: tuple[str, ...] = ("", "b", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
                           "z", "ch", "sh", "th", "st", "tr", "br", "dr", "gr", "cl", "pl", "sp", "bl", "fr", "sn")
VOWEL_SUBS: tuple[str, ...] = ("a", "e", "i", "o", "u", "ay", "ee", "oo", "ai", "oa", "ou", "ie", "y")
# Content words only: a hesitation ("hey, uh, jarvis") is how people really say the phrase, not a negative.
FILLERS: tuple[str, ...] = ("there", "you", "now", "the", "my", "big")


def _split_onset(word: str) -> tuple[str, str]:
    """(leading consonants, rest). A word-initial 'y' is a consonant; 'qu' stays together."""
    i = 0
    while i < len(word) and (word[i] not in _VOWELS or (i == 0 and word[i] == "y")):
        i += 1
    if word[:i].endswith("q") and word[i:i + 1] == "u":
        i += 1
    return word[:i], word[i:]


def _vowel_groups(word: str) -> list[tuple[int, int]]:
    """Spans of vowel letters (y counts as a vowel except at the start)."""
    spans = []
    for m in re.finditer(r"[aeiouy]+", word):
        s, e = m.span()
        if s == 0 and word[0] == "y":
            s += 1
            if s == e:
                continue
        spans.append((s, e))
    return spans


def _rhyme_key(word: str) -> str:
    """Last vowel group plus coda ('hey' -> 'ey', 'jarvis' -> 'is'); a bare final vowel keeps its consonant."""
    groups = _vowel_groups(word)
    if not groups:
        return word
    s = groups[-1][0]
    key = word[s:]
    if len(key) == 1 and s > 0:
        key = word[s - 1:]
    return key


def _onset_variants(word: str) -> list[str]:
    onset, rime = _split_onset(word)
    if not rime:
        return []
    # Dropping an /h/ onset is an accent ("'ey jarvis" is still the phrase), so it is never a negative.
    return [o + rime for o in ONSETS if o != onset and not (o == "" and onset == "h")]


def _coda_simplified(word: str) -> list[str]:
    """Drop one consonant of the first post-vowel cluster ('jarvis' -> 'javis', 'jaris')."""
    groups = _vowel_groups(word)
    if not groups:
        return []
    e = groups[0][1]
    j = e
    while j < len(word) and word[j] not in _VOWELS + "y":
        j += 1
    if j - e < 2 or j >= len(word):
        return []
    return [word[:k] + word[k + 1:] for k in range(e, j)]


def _vowel_variants(word: str) -> list[str]:
    """Substitute the first vowel group only.

    Changing a later (usually unstressed, reduced) vowel gives a near-homophone ("jarvas", "jarvys" are
    still heard as "jarvis"), which would be a mislabelled negative.
    """
    groups = _vowel_groups(word)
    if not groups:
        return []
    s, e = groups[0]
    return [word[:s] + v + word[e:] for v in VOWEL_SUBS if v != word[s:e]]


def _truncations(word: str) -> list[str]:
    """The word cut after its first syllable ('jarvis' -> 'jar', 'nova' -> 'nov')."""
    groups = _vowel_groups(word)
    if len(groups) < 2:
        return []
    e = groups[0][1]
    cut = word[: e + 1] if e < len(word) and word[e] not in _VOWELS else word[:e]
    return [cut] if cut and cut != word else []


def _replace(words: list[str], i: int, new: str) -> str:
    return " ".join(words[:i] + [new] + words[i + 1:])


def confusable_phrases(phrase: str, rng: np.random.Generator,
                       same_sound: Callable[[str], str] | None = None,
                       vocabulary: Sequence[str] = VOCABULARY) -> list[str]:
    """Hard-negative phrases derived mechanically from ``phrase`` (works for any phrase).

    Families: each word alone; prefixes, suffixes and a cut-off last word ("hey jar"); onset-consonant
    substitutions per word ("hey marvis", "hey travis" via the simplified "javis"); vowel substitutions
    ("hey jervis"); word-order permutations; one word replaced by a vocabulary word with the same rhyme
    ending ("they jarvis" when "they" rhymes with "hey"); a filler word inserted between words.

    Every result differs from the phrase after normalisation and does not contain it. If ``same_sound`` (a
    text -> phoneme-string function) is given, homophones of the phrase ("hay jarvis") are dropped too,
    since they would be wrongly labelled negatives. The list is deduplicated and shuffled by ``rng``.
    """
    words = tokens(phrase)
    if not words:
        raise ValueError(f"phrase {phrase!r} has no letters")
    n = len(words)
    cands: list[str] = []
    if n > 1:
        cands += words
        cands += [" ".join(words[:k]) for k in range(1, n)] + [" ".join(words[k:]) for k in range(1, n)]
        perms = [p for p in itertools.permutations(words) if list(p) != words]
        cands += [" ".join(p) for p in perms[:12]]
        for i in range(1, n):
            cands += [" ".join(words[:i] + [f] + words[i:]) for f in FILLERS]
    for t in _truncations(words[-1]):
        cands.append(" ".join(words[:-1] + [t]))
    by_rhyme: dict[str, list[str]] = {}
    for w in vocabulary:
        by_rhyme.setdefault(_rhyme_key(w), []).append(w)
    for i, w in enumerate(words):
        for v in _onset_variants(w):
            cands.append(_replace(words, i, v))
        for simple in _coda_simplified(w):
            cands.append(_replace(words, i, simple))
            for v in _onset_variants(simple):
                cands.append(_replace(words, i, v))
        for v in _vowel_variants(w):
            cands.append(_replace(words, i, v))
        for r in by_rhyme.get(_rhyme_key(w), []):
            if r != w:
                cands.append(_replace(words, i, r))
    out: dict[str, str] = {}
    for c in cands:
        norm = normalize_text(c)
        if not norm or norm in out or _is_phrase(norm, phrase) or contains_phrase(norm, phrase):
            continue
        out[norm] = norm
    result = sorted(out)
    if same_sound is not None:
        target = same_sound(phrase)
        result = [c for c in result if same_sound(c) != target]
    order = rng.permutation(len(result))
    return [result[int(i)] for i in order]


# ----------------------------------------------------------------------------------------------------------
# Positive spellings
# ----------------------------------------------------------------------------------------------------------


def spelling_variants(text: str) -> list[str]:
    """Spellings of ``text`` that TTS engines read differently, the same ones for any text: the phrase's
    and its confusables' alike, so a pause after the first word or a question's
    intonation never tells the one from the other. Every spelling normalises to ``text``."""
    words = tokens(text)
    if not words:
        raise ValueError(f"phrase {text!r} has no letters")
    base = " ".join(words)
    title = " ".join(w.capitalize() for w in words)
    first_cap = base[0].upper() + base[1:]
    variants = [base, title, first_cap, base + "?", title + "!", first_cap + ".", base + "!", first_cap + "?"]
    if len(words) > 1:
        comma_title = words[0].capitalize() + ", " + " ".join(w.capitalize() for w in words[1:])
        comma_lower = words[0] + ", " + " ".join(words[1:])
        variants += [comma_title + "!", comma_lower + "?", comma_title + ".", comma_lower]
    seen: dict[str, None] = {}
    for v in variants:
        seen.setdefault(v, None)
    return list(seen)


# Short words people say around a wake phrase ("ok hey jarvis please"). One or two short words only, so
# the phrase still fits the model window when the utterance is centred in it.
CONTEXT_BEFORE: tuple[str, ...] = ("ok", "okay", "oh", "so", "um", "well", "hi", "yes")
CONTEXT_AFTER: tuple[str, ...] = ("please", "now", "thanks", "again", "stop", "hello", "lights on", "wake up")


def with_context_words(text: str, rng: np.random.Generator) -> str:
    """``text`` with a short word before it, after it, or both (:data:`CONTEXT_BEFORE` / :data:`CONTEXT_AFTER`),
    capitalised, sometimes a question. Used alike for the phrase and its confusables."""
    words = " ".join(tokens(text))
    r = rng.random()
    before = _pick(rng, CONTEXT_BEFORE) if r < 0.7 else ""
    after = _pick(rng, CONTEXT_AFTER) if r >= 0.4 else ""
    out = " ".join(w for w in (before, words, after) if w)
    return out[0].upper() + out[1:] + ("?" if rng.random() < 0.3 else "")
