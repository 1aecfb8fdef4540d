"""Evaluation as in the RemoteCLIP paper: retrieval, zero-shot, probes (linear, k-NN, few-shot),
RemoteCount. Metric functions take features already in hand; `Evaluator` drives a model over the
``config.evals`` entries and writes WORKDIR/eval/."""
from remoteclip_jax.evaluate.counting import (count_captions, count_metrics, count_report,
                                              count_scores, count_topk_curve)
from remoteclip_jax.evaluate.evaluator import Evaluator
from remoteclip_jax.evaluate.itra_probes import itra_fewshot, itra_linear_probe
from remoteclip_jax.evaluate.probes import fewshot, knn_classify, linear_probe
from remoteclip_jax.evaluate.retrieval import (retrieval_metric_bounds, retrieval_metrics,
                                               retrieval_report)
from remoteclip_jax.prompts import get_templates
from remoteclip_jax.evaluate.zeroshot import (class_embeddings, classification_metrics,
                                             zeroshot_classifier, zeroshot_logits)
from remoteclip_jax.errors import ConfigError, DataError

__all__ = ["DataError", "ConfigError", "Evaluator", "class_embeddings",
           "classification_metrics", "count_captions", "count_metrics", "count_report",
           "count_scores", "count_topk_curve", "fewshot", "get_templates", "itra_fewshot",
           "itra_linear_probe", "knn_classify", "linear_probe",
           "retrieval_metric_bounds", "retrieval_metrics", "retrieval_report",
           "zeroshot_classifier", "zeroshot_logits"]
