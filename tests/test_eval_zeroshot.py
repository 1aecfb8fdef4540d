"""Zero-shot class embeddings, logits and metrics against hand computations and scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, top_k_accuracy_score

from remoteclip_jax.evaluate.classnames import readable, readable_classnames
from remoteclip_jax.evaluate.templates import GEORSCLIP_TEMPLATES, get_templates
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


def test_topk_ties_are_pessimistic():
    m = classification_metrics(np.array([[1.0, 1.0, 0.0]]), np.array([0]), ks=(1, 2))
    assert m["top1"] == 0.0 and m["top2"] == 100.0


def test_readable_classnames():
    assert readable("BaseballField") == "baseball field"
    assert readable("baseball_diamond") == "baseball diamond"
    assert readable("small-vehicle") == "small vehicle"
    assert readable("footballField") == "football field"
    assert readable_classnames(["SeaLake", "golffield"], "EuroSAT", {"golffield": "golf course"}) == [
        "sea or lake", "golf course"]


def test_templates():
    assert get_templates("paper") == ("a satellite photo of {}.",)
    assert len(get_templates("remoteclip", "RESISC45")) == 18
    assert len(get_templates("remoteclip", "WHU-RS19")) == 5
    assert len(GEORSCLIP_TEMPLATES) == 105 == len(set(GEORSCLIP_TEMPLATES))
    assert "a jpeg corrupted aerial image of a {}." in GEORSCLIP_TEMPLATES
    assert build_prompts(["farm"], get_templates(["an image of {}."])) == ["an image of farm."]
    with pytest.raises(ValueError, match="exactly one"):
        get_templates(["no placeholder"])
