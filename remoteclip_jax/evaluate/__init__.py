"""Evaluation as in the RemoteCLIP paper: retrieval, zero-shot, probes (linear, k-NN, few-shot),
RemoteCount. Metric functions take features already in hand; `run_evaluation` drives a model."""
from remoteclip_jax.evaluate.retrieval import retrieval_metrics

__all__ = ["retrieval_metrics"]
