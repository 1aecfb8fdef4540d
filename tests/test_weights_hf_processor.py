"""CLIPProcessor files generated from our BPE: transformers' tokenizer gives our ids, its image
processor our preprocessing."""
import json
import re

import numpy as np
import pytest
from PIL import Image

import remoteclip_jax as rc
from remoteclip_jax import transforms
from remoteclip_jax.tokenizer import clean_text, tokenize
from remoteclip_jax.weights import hf_processor
from tests.test_tokenizer import _SAFE_ASCII, CORPUS

transformers = pytest.importorskip("transformers")
open_clip = pytest.importorskip("open_clip")

# Where transformers' CLIP tokenizer differs by design (see hf_processor's docstring): literal
# special-token text, and the case-insensitive contractions open_clip's pattern lets "'ſ" match.
_KNOWN_DIFFERENCE = re.compile(r"(?i:_of_te)|ſ")  # ſ outside (?i): it would match every s


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    out = tmp_path_factory.mktemp("processor")
    hf_processor.write_processor_files(str(out), image_size=32)
    return transformers.CLIPProcessor.from_pretrained(str(out)), out


def _hf_ids(tokenizer, texts):
    enc = tokenizer(list(texts), padding="max_length", max_length=77, truncation=True)
    ids, mask = np.array(enc["input_ids"]), np.array(enc["attention_mask"])
    return np.where(mask == 1, ids, 0)  # our rows pad with 0 where transformers pads with its pad id


def test_vocabulary_equals_open_clip_encoder(processor):
    _, out = processor
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    theirs = dict(open_clip.tokenizer.SimpleTokenizer().encoder)
    renamed = {"<start_of_text>": hf_processor.HF_BOS, "<end_of_text>": hf_processor.HF_EOS}
    assert vocab == {renamed.get(t, t): i for t, i in theirs.items()}
    merges = (out / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version") and len(merges) - 1 == 49408 - 512 - 2


def test_processor_tokenizer_gives_our_ids_on_the_tokenizer_corpus(processor):
    tokenizer = processor[0].tokenizer
    kept = [t for t in CORPUS if not _KNOWN_DIFFERENCE.search(t)]
    assert len(kept) > 0.9 * len(CORPUS)
    # transformers does not run ftfy/HTML unescaping, so it is given the cleaned text.
    ours, theirs = tokenize(kept), _hf_ids(tokenizer, [clean_text(t) for t in kept])
    bad = [kept[i] for i in np.flatnonzero((ours != theirs).any(axis=1))]
    assert not bad, f"{len(bad)} texts differ, e.g. {bad[:3]!r}"
    # On text that cleaning leaves alone, raw text gives the same ids too.
    plain = [t for t in kept if all(c in _SAFE_ASCII for c in t)]
    assert len(plain) > 1000
    np.testing.assert_array_equal(_hf_ids(tokenizer, plain), tokenize(plain))


def test_processor_pads_with_the_end_token_and_truncates_like_us(processor):
    tokenizer = processor[0].tokenizer
    long = "field " * 200
    enc = tokenizer([long, "a farm"], padding="max_length", max_length=77, truncation=True)
    np.testing.assert_array_equal(np.array(enc["input_ids"][0]), tokenize(long)[0])
    assert enc["input_ids"][1][3:] == [49407] * 74 and sum(enc["attention_mask"][1]) == 4


@pytest.mark.parametrize("size", [(32, 32), (48, 40), (300, 200), (37, 91)])
def test_processor_images_equal_image_transform_within_one_grey_level(processor, size):
    rng = np.random.default_rng(sum(size))
    image = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    ours = rc.image_transform(32, train=False)(image)
    theirs = processor[0](images=image, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
    # Both resize with PIL-style bicubic to uint8; rounding may differ by one grey level.
    one_level = 1 / 255 / min(transforms.OPENAI_STD)
    assert np.abs(ours - theirs).max() <= one_level * 1.01
    assert np.abs(ours - theirs).mean() < 0.01 * one_level
