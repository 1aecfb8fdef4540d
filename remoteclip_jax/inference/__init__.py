"""Inference for remote-sensing users: labels, embeddings and search over folders of images.

Python API (each mirrors a `remoteclip-jax` command; all accept `model=` a model directory or a
`(model, variables)` pair, or `encoder=` an `Encoder` to reuse across calls):

  classify(images, classes, model=..., dataset=..., templates=..., out_dir=...) -> Predictions
      zero-shot labels; score = softmax over classes of 100 x cosine similarity.
  segment(images, classes, model=..., dense="value", out_dir=...) -> dict
      a zero-shot class per ViT patch; segment_scene(scene, ..., tile=N) -> OUT/classmap.tif.
  embed(source, out_dir, model=..., shard_size=...) -> EmbedSummary
      image/caption embeddings -> a resumable store in clip-retrieval's layout.
  search(store_dir, texts=[...], images=[...], model=..., k=..., out_dir=...) -> [QueryHits]
      text -> image and image -> image top-k, with PNG/HTML contact sheets.
  Encoder(model, variables, batch_size=None, dtype=None)
      .images(paths) -> EncodedImages, .iter_images(paths), .texts(texts), .arrays(batch),
      .patches(items, recipe) (unit patch features)
      L2-normalised float32 features; unreadable images are skipped and listed.
  load_model(path) -> (model, variables)

Submodules are imported on first use, so `import remoteclip_jax.inference` stays light.
"""
from remoteclip_jax.lazy import lazy_attributes

_EXPORTS = {
    "classify": "remoteclip_jax.inference.zero_shot",
    "Predictions": "remoteclip_jax.inference.zero_shot",
    "segment": "remoteclip_jax.inference.segment",
    "segment_scene": "remoteclip_jax.inference.segment",
    "embed": "remoteclip_jax.inference.embedding",
    "EmbedSummary": "remoteclip_jax.inference.embedding",
    "search": "remoteclip_jax.inference.image_search",
    "QueryHits": "remoteclip_jax.inference.contact_sheet",
    "Encoder": "remoteclip_jax.inference.encoder",
    "EncodedImages": "remoteclip_jax.inference.encoder",
    "EmbeddingStore": "remoteclip_jax.data.store",
    "load_model": "remoteclip_jax.inference.loading",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes("remoteclip_jax.inference", _EXPORTS)
