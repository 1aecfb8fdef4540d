"""Evaluation as in the RemoteCLIP paper: retrieval, zero-shot, probes (linear, k-NN, few-shot),
RemoteCount. Metric functions take features already in hand; `Evaluator` drives a model over the
``config.evals`` entries and writes WORKDIR/eval/.

Names are imported on first use, so the config schema (which reads the task modules' keys) does
not import jax.
"""
from remoteclip_jax.lazy import lazy_attributes

_EXPORTS = {
    **dict.fromkeys(["count_captions", "count_metrics", "count_report", "count_scores",
                     "count_topk_curve"], "remoteclip_jax.evaluate.counting"),
    "Evaluator": "remoteclip_jax.evaluate.evaluator",
    **dict.fromkeys(["itra_fewshot", "itra_linear_probe"], "remoteclip_jax.evaluate.itra_probes"),
    **dict.fromkeys(["fewshot", "knn_classify", "linear_probe"], "remoteclip_jax.evaluate.probes"),
    **dict.fromkeys(["retrieval_metric_bounds", "retrieval_metrics", "retrieval_report"],
                    "remoteclip_jax.evaluate.retrieval"),
    "get_templates": "remoteclip_jax.prompts",
    **dict.fromkeys(["class_embeddings", "classification_metrics", "zeroshot_classifier",
                     "zeroshot_logits"], "remoteclip_jax.evaluate.zeroshot"),
    **dict.fromkeys(["ConfigError", "DataError"], "remoteclip_jax.errors"),
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes("remoteclip_jax.evaluate", _EXPORTS)
