"""The model card: hub-parsable front matter, activation, training, evaluation, licence."""
import json

import pytest

from remoteclip_jax.models import TINY_VIT
from remoteclip_jax.weights.model_card import write_model_card
from remoteclip_jax.errors import DataError

huggingface_hub = pytest.importorskip("huggingface_hub")


def test_card_states_model_activation_training_results_and_licence(tmp_path):
    results = tmp_path / "results.json"  # the flat layout `remoteclip-jax eval` writes
    results.write_text(json.dumps({"eval/rsicd/i2t_R@1": 0.1234, "eval/aid/top1": 0.95,
                                   "eval/aid/linear_probe_top1": 0.97}))
    path = write_model_card(str(tmp_path), model="RemoteCLIP-ViT-B-32", quick_gelu=True,
                            training={"data": "RET-3 + DET-10 + SEG-4", "steps": 10000},
                            eval_results=str(results), license="apache-2.0", format="hf")
    card = huggingface_hub.ModelCard.load(path)  # the hub's own parser of the front matter
    assert card.data.license == "apache-2.0" and card.data.library_name == "transformers"
    text = card.text
    assert "# RemoteCLIP-ViT-B-32" in text and "QuickGELU" in text
    assert "**data:** RET-3 + DET-10 + SEG-4" in text and "**steps:** 10000" in text
    assert "| rsicd | i2t_R@1 | 0.1234 |" in text and "| aid | linear_probe_top1 | 0.97 |" in text
    assert "CLIPModel.from_pretrained" in text


def test_card_without_optional_fields_implies_no_licence(tmp_path):
    path = write_model_card(str(tmp_path), model=TINY_VIT, quick_gelu=False)
    card = huggingface_hub.ModelCard.load(path)
    assert card.data.license == "other" and card.data.library_name == "open_clip"
    assert "exact GELU" in card.text and card.text.count("Not recorded.") == 2
    assert '"embed_dim": 32' in card.text  # a custom size lists its config


def test_unreadable_results_are_one_line_errors(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"eval/aid/top1": "high"}))
    with pytest.raises(DataError, match="expected a flat object of metric name -> number"):
        write_model_card(str(tmp_path), model=TINY_VIT, quick_gelu=True, eval_results=str(tmp_path / "bad.json"))
    with pytest.raises(DataError, match="evaluation results file not found"):
        write_model_card(str(tmp_path), model=TINY_VIT, quick_gelu=True, eval_results=str(tmp_path / "no.json"))
