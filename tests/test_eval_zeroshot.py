"""Zero-shot class embeddings, logits and metrics against hand computations and scikit-learn;
template sets against the lists transcribed from the reference code."""
import json
import pathlib

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, top_k_accuracy_score

from remoteclip_jax.errors import UserError
from remoteclip_jax.prompts import GEORSCLIP_TEMPLATES, get_templates
from remoteclip_jax.evaluate.zeroshot import (build_prompts, class_embeddings, classification_metrics,
                                             zeroshot_classifier, zeroshot_logits)


def test_class_embedding_methods_hand_computed():
    # One class, two prompts of very different norms: the methods disagree in a known way.
    f = np.array([[10.0, 0.0], [0.0, 1.0]])
    openai = class_embeddings(f, 1, "openai")
    average = class_embeddings(f, 1, "average")
    np.testing.assert_allclose(openai, [[np.sqrt(0.5), np.sqrt(0.5)]], atol=1e-12)
    np.testing.assert_allclose(average, [[10 / np.sqrt(101), 1 / np.sqrt(101)]], atol=1e-12)


def test_zeroshot_classifier_uses_class_major_prompts():
    seen = []

    def encode(texts):
        seen.extend(texts)
        return np.array([[1.0 + i, 2.0 * i] for i in range(len(texts))])

    emb = zeroshot_classifier(encode, ["farm", "port"], ["a {}.", "the {}."], method="average")
    assert seen == ["a farm.", "the farm.", "a port.", "the port."]
    want = np.array([[1.5, 1.0], [3.5, 5.0]])
    np.testing.assert_allclose(emb, want / np.linalg.norm(want, axis=1, keepdims=True))


def test_logits_are_100_cosine():
    img = np.array([[3.0, 4.0]])
    cls = np.array([[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(zeroshot_logits(img, cls), [[60.0, 80.0]])


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    n, c = 300, 12
    labels = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), labels] += 1.0
    m = classification_metrics(logits, labels, c)
    assert m["top1"] == pytest.approx(100 * top_k_accuracy_score(labels, logits, k=1, labels=range(c)))
    assert m["top5"] == pytest.approx(100 * top_k_accuracy_score(labels, logits, k=5, labels=range(c)))
    np.testing.assert_array_equal(m["confusion"], confusion_matrix(labels, logits.argmax(1), labels=range(c)))
    assert m["mean_per_class"] == pytest.approx(100 * balanced_accuracy_score(labels, logits.argmax(1)))


def test_topk_tie_rules():
    logits = np.array([[1.0, 1.0, 0.0]])
    m = classification_metrics(logits, np.array([0]), ks=(1, 2), ties="pessimistic")
    assert m["top1"] == 0.0 and m["top2"] == 100.0
    assert classification_metrics(logits, np.array([0]), ks=(1,), ties="optimistic")["top1"] == 100.0
    assert classification_metrics(logits, np.array([0]), ks=(1,))["top1"] == pytest.approx(50.0)


def test_average_is_the_default_class_embedding():
    # ITRA zero_shot.py lines 34-36: mean of the raw prompt features, then normalise.
    f = np.array([[10.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(class_embeddings(f, 1), [[10 / np.sqrt(101), 1 / np.sqrt(101)]])


# Transcribed from ITRA branch test itra/data/classname_and_prompt/*.py (list `templates`) and
# RS5M inference/classname_and_prompt/RSAID.py; each entry names its file.
REFERENCE = json.loads((pathlib.Path(__file__).parent / "data" / "reference_zeroshot_tables.json").read_text())
CONFIG_NAMES = {"aid": "AID", "eurosat": "EuroSAT", "mlrsnet": "MLRSNet", "resisc45": "RESISC45",
                "optimal31": "OPTIMAL-31", "patternnet": "PatternNet", "rsc11": "RSC11",
                "rs2800": "RS2800", "rsicb128": "RSI-CB128", "rsicb256": "RSI-CB256",
                "siriwhu": "SIRI-WHU", "whurs19": "WHU-RS19", "ucmerced": "UCMerced"}


@pytest.mark.parametrize("key", sorted(CONFIG_NAMES))
def test_remoteclip_templates_equal_the_reference(key):
    assert list(get_templates("remoteclip", CONFIG_NAMES[key])) == REFERENCE["itra"][key]["templates"]


def test_georsclip_templates_equal_the_reference_in_order():
    assert list(GEORSCLIP_TEMPLATES) == REFERENCE["georsclip_templates"]["templates"]
    assert get_templates("georsclip", "anything") == GEORSCLIP_TEMPLATES


def test_templates():
    assert get_templates("paper") == ("a satellite photo of {}.",)
    assert build_prompts(["farm"], get_templates(["an image of {}."])) == ["an image of farm."]
    with pytest.raises(UserError, match="exactly one"):
        get_templates(["no placeholder"])
    with pytest.raises(UserError, match="templates='openai'"):
        get_templates("openai")
