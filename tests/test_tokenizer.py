"""The CLIP tokenizer gives the same ids as open_clip.tokenize (the reference)."""
import gzip
import html
import json
import random

import ftfy
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remoteclip_jax import tokenizer as tok
from remoteclip_jax.tokenizer import EOT_ID, SOT_ID, Tokenizer, clean_text, tokenize
from remoteclip_jax.errors import DataError

open_clip = pytest.importorskip("open_clip")


def reference(texts, context_length=77):
    return open_clip.tokenize(texts, context_length=context_length).numpy()


# ----------------------------------------------------------------- test corpus
_SCENES = ["airport", "bare land", "baseball field", "beach", "bridge", "center", "church", "commercial area",
           "dense residential", "desert", "farmland", "forest", "industrial", "meadow", "parking lot", "playground",
           "pond", "port", "railway station", "resort", "river", "school", "storage tanks", "stadium", "viaduct"]
_ADJ = ["many", "several", "some", "two", "3", "green", "grey", "white", "dark", "large", "small", "dense", "sparse"]
_NOUNS = ["buildings", "trees", "cars", "planes", "boats", "roads", "houses", "ponds", "runways", "tanks", "fields"]
_UNICODE = ["café", "naïve", "Zürich", "São Paulo", "東京の空港", "北京 机场", "서울", "Москва", "Αθήνα ΟΔΟΣ", "مطار",
            "😀", "🛰️ satellite", "🏗👷‍♀️", "e\u0301", "ﬁeld", "ＬＯＵＤ　ＮＯＩＳＥ", "“quoted”", "it’s", "cafÃ©",
            "âœ” done", "\u200bzero\u200bwidth", "nb\u00a0sp", "İstanbul", "ſtraße", "ǅemal", "x\u0085y", "a\u2028b",
            "\x1b[36mblue\x1b[0m", "ctl\x01\x02\x7f", "tab\tand\r\nbreak", "\ufeffbom", "½ ⅓ ², ٣", "Ⅻ", "µm", "ß"]
_ENTITIES = ["&amp;", "&#39;", "&lt;b&gt;", "&amp;amp;", "&amp;amp;amp;", "&quot;", "&nbsp;", "&#x2019;", "&hellip;",
             "&eacute;", "&EACUTE;", "&copy", "&#128512;", "&notanentity;", "&", "&&;", "<b>bold &amp; co</b>"]
_PUNCT = ["...", "!!!", "?!", "--", "()", "[]", "{}", "#$%", "@@", "'", "''", "'s", "'t", "'re", "'ve", "'m", "'ll",
          "'d", "'S", "'LL", "`", "~~", "_", "__init__", "<start_of_text>", "<end_of_text>", "<START_OF_TEXT>", "/",
          "'ſ", "<ſtart_of_text>", "<end_of_teXt>"]
_NUMBERS = ["0", "7", "42", "2021", "3.14", "1,000", "-5", "1e-6", "0x1F", "007", "12345678901234567890"]


def _rsicd_caption(rng: random.Random) -> str:
    # RSICD style: lower case, a space before the final period, sometimes a double space.
    scene = rng.choice(_SCENES)
    parts = [rng.choice(_ADJ), rng.choice(_NOUNS), rng.choice(["are near", "are around", "are in", "surround"]),
             rng.choice(["a", "the", "an"]), scene]
    sep = rng.choice([" ", " ", " ", "  "])
    return sep.join(parts) + rng.choice([" .", " .", ".", " . ", ""])


def make_corpus(n: int = 4000, seed: int = 0) -> list[str]:
    """Deterministic mix of captions, unicode, entities, punctuation, numbers and long texts."""
    rng = random.Random(seed)
    pools = [_UNICODE, _ENTITIES, _PUNCT, _NUMBERS, _SCENES, _NOUNS]
    corpus = ["", " ", "\n\t ", "a", "A", "."]
    corpus += _UNICODE + _ENTITIES + _PUNCT + _NUMBERS
    while len(corpus) < n:
        kind = rng.random()
        if kind < 0.35:
            text = _rsicd_caption(rng)
        elif kind < 0.75:
            words = [rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 12))]
            joiner = rng.choice([" ", "", "  ", "\t", " \n"])
            text = joiner.join(words)
            if rng.random() < 0.3:
                text = text.upper() if rng.random() < 0.5 else text.title()
        elif kind < 0.85:
            # Over-long: well past 77 tokens.
            text = " ".join(_rsicd_caption(rng) for _ in range(rng.randint(5, 15)))
        else:
            # Random code points from a few blocks, incl. ASCII controls.
            blocks = [(0x0, 0x7F), (0x80, 0x24F), (0x370, 0x4FF), (0x3040, 0x30FF), (0x4E00, 0x4FFF),
                      (0x1F300, 0x1F64F), (0x2000, 0x206F), (0xFF00, 0xFFEF)]
            lo, hi = rng.choice(blocks)
            text = "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 30)))
        corpus.append(text)
    return corpus


CORPUS = make_corpus()


# ----------------------------------------------------------------------- ids
def test_ids_match_open_clip_on_varied_corpus():
    ours = tokenize(CORPUS)
    assert ours.dtype == np.int32 and ours.shape == (len(CORPUS), 77)
    ref = reference(CORPUS)
    mismatched = [CORPUS[i] for i in np.flatnonzero((ours != ref).any(axis=1))]
    assert not mismatched, f"{len(mismatched)} texts differ, e.g. {mismatched[:3]!r}"


def test_corpus_exercises_truncation_unicode_and_entities():
    # Guards against the corpus silently losing its hard cases.
    ids = reference(CORPUS)
    assert (ids[:, -1] == EOT_ID).sum() > 100  # over-long rows
    assert sum(not t.isascii() for t in CORPUS) > 500
    assert sum("&" in t for t in CORPUS) > 200


@pytest.mark.parametrize("context_length", [1, 2, 3, 8, 16, 32, 100])
def test_ids_match_open_clip_for_other_context_lengths(context_length):
    texts = CORPUS[:600]
    np.testing.assert_array_equal(tokenize(texts, context_length), reference(texts, context_length))


def test_ids_match_open_clip_on_real_rsicd_captions(shared_data):
    captions = []
    with open(shared_data / "rsicd_aid" / "val.jsonl") as f:
        for line in f:
            captions.extend(json.loads(line)["captions"])
    assert len(captions) > 5000
    np.testing.assert_array_equal(tokenize(captions), reference(captions))


def test_empty_string_is_start_then_end():
    expected = np.zeros((1, 77), np.int32)
    expected[0, :2] = [SOT_ID, EOT_ID]
    np.testing.assert_array_equal(tokenize(""), expected)
    np.testing.assert_array_equal(tokenize(""), reference(""))


def test_single_string_and_empty_batch():
    assert tokenize("a farm .").shape == (1, 77)
    assert tokenize([]).shape == (0, 77)
    assert tokenize(("a", "b")).shape == (2, 77)


def test_overlong_row_is_truncated_and_ends_with_eot():
    ids = tokenize("field " * 200)[0]
    assert ids[0] == SOT_ID and ids[-1] == EOT_ID and (ids != 0).all()
    np.testing.assert_array_equal(ids, reference("field " * 200)[0])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=120))
def test_ids_match_open_clip_on_fuzzed_text(text):
    np.testing.assert_array_equal(tokenize(text), reference(text))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(_UNICODE + _ENTITIES + _PUNCT + _NUMBERS + _NOUNS), max_size=40),
       st.sampled_from([" ", "", "\n"]), st.integers(1, 80))
def test_ids_match_open_clip_on_fuzzed_word_mixes(words, joiner, context_length):
    text = joiner.join(words)
    np.testing.assert_array_equal(tokenize(text, context_length), reference(text, context_length))


# ------------------------------------------------------------------- cleaning
_SAFE_ASCII = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "&") + "\t\n"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(alphabet=_SAFE_ASCII, max_size=200))
def test_ftfy_and_html_are_identity_on_the_ascii_fast_path(text):
    # clean_text skips ftfy/html for exactly this alphabet; that is only sound if
    # they would not have changed the text.
    assert html.unescape(html.unescape(ftfy.fix_text(text))) == text


def test_fast_path_alphabet_is_printable_ascii_without_ampersand():
    # The alphabet proven safe above is exactly the one clean_text lets through.
    for code in range(0x80):
        ch = chr(code)
        on_fast_path = tok._NEEDS_FULL_CLEAN.search(ch) is None
        assert on_fast_path == (ch in _SAFE_ASCII), repr(ch)


def test_clean_text_matches_reference_cleaning():
    ref_clean = getattr(open_clip.tokenizer, "_clean_lower", None)
    if ref_clean is None:
        pytest.skip("open_clip has no _clean_lower")
    for text in CORPUS[:2000]:
        assert clean_text(text) == ref_clean(text), repr(text)


# ------------------------------------------------------------ class behaviour
def test_encode_is_tokenize_row_without_specials():
    tk = Tokenizer()
    for text in CORPUS[:300]:
        ids = tk.encode(text)
        row = reference(text, 2000)[0]
        n = int((row != 0).sum())
        assert ids == row[1 : n - 1].tolist()


def test_decode_matches_open_clip_decode():
    tk = Tokenizer()
    for text in CORPUS[:300]:
        ids = reference(text)[0]
        assert tk.decode(ids) == open_clip.decode(open_clip.tokenize(text)[0])


def test_decode_skip_special_tokens_round_trips_clean_text():
    tk = Tokenizer()
    text = "Two Planes are parked near the TERMINAL ."
    assert tk.decode(tokenize(text)[0], skip_special_tokens=True) == "two planes are parked near the terminal . "


def test_small_cache_evicts_and_stays_exact():
    tk = Tokenizer(cache_size=50)
    texts = CORPUS[:800]
    np.testing.assert_array_equal(tk(texts), reference(texts))
    assert len(tk._cache) <= 50
    # Literal special tokens keep their ids after evictions.
    np.testing.assert_array_equal(tk("<start_of_text> x <end_of_text>"), reference("<start_of_text> x <end_of_text>"))


def test_vocab_loads_lazily_and_once():
    tk = Tokenizer(vocab_path="/nonexistent/vocab.txt.gz")  # constructing reads nothing
    with pytest.raises(DataError, match="/nonexistent/vocab.txt.gz: BPE vocabulary file not found"):
        tk.encode("a")
    tk = Tokenizer()
    tk.encode("a")
    encoder = tk._encoder
    tk.encode("b")
    assert tk._encoder is encoder
    assert len(encoder) == tok.VOCAB_SIZE


def test_malformed_vocab_names_file_and_line(tmp_path):
    path = tmp_path / "bad.txt.gz"
    lines = ["#version: 0.2", "i n", "t h", "oops", *(["a b"] * 49000)]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines))
    with pytest.raises(DataError, match=r"bad\.txt\.gz: line 4: expected two symbols"):
        Tokenizer(vocab_path=str(path)).encode("a")
    short = tmp_path / "short.txt.gz"
    with gzip.open(short, "wt", encoding="utf-8") as f:
        f.write("#version\ni n\n")
    with pytest.raises(DataError, match="short.txt.gz: holds"):
        Tokenizer(vocab_path=str(short)).encode("a")


def test_tokenizer_pickles_without_its_vocabulary():
    import pickle

    tk = Tokenizer(cache_size=1234)
    tk("warm the cache")
    blob = pickle.dumps(tk)
    assert len(blob) < 1000  # settings only, no vocabulary or cache
    clone = pickle.loads(blob)
    assert clone.cache_size == 1234 and not clone._loaded
    np.testing.assert_array_equal(clone(CORPUS[:50]), reference(CORPUS[:50]))


def test_context_length_none_means_77():
    np.testing.assert_array_equal(Tokenizer()("a farm", None), reference("a farm"))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(TypeError, match=r"texts\[1\] is int, expected str"):
        tokenize(["ok", 3])
    with pytest.raises(ValueError, match="context_length must be a positive int"):
        tokenize("a", 0)
    with pytest.raises(ValueError, match="context_length"):
        tokenize("a", 7.5)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        Tokenizer().decode([49408])
