"""`convert-data --runner beam`: the per-image work of a conversion as an Apache Beam pipeline.

The reader enumerates the annotated images here and cuts them into numbered chunks; the pipeline
converts each chunk (decode, Box-to-Caption, JPEG encode: `convert_annotations._convert_one`,
the function every runner uses) and stores its results as one msgpack file under a temporary
directory. Once the pipeline has finished, the chunks are read back in their order and written
by the same `RecordWriter` as a local conversion, so shards, split indices, summary and
manifest are the ones one process writes.

Runs on Beam's DirectRunner (``--workers`` processes) unless `beam_options` names another runner
(``--runner=DataflowRunner --project=... --temp_location=gs://...``); the chunk files go under
the pipeline's ``--temp_location`` when given (a bucket every remote worker can write, through
Beam's `FileSystems`), else into the local output folder; a remote runner also needs the images
where its workers can read them.
"""
from __future__ import annotations

import shlex
import uuid
from collections.abc import Iterable
from typing import Any

import msgpack

from remoteclip_jax.errors import ConfigError
from remoteclip_jax.lazy import optional_module

INSTALL_HINT = "install Apache Beam (pip install 'remoteclip_jax[beam]')"
# Images per Beam element: large enough to amortise a file per chunk, small enough to spread
# a small dataset over the workers.
CHUNK = 64


def _import_beam():
    return optional_module("apache_beam", f"--runner beam needs Apache Beam: {INSTALL_HINT}",
                           ConfigError)


def _chunk_path(temp_dir: str, index: int) -> str:
    return f"{temp_dir}/chunk-{index:08d}.msgpack"


def _convert_and_store(element, kwargs: dict[str, Any], temp_dir: str) -> int:
    """Beam step: converts chunk `element` = (index, items) and stores its results."""
    from apache_beam.io.filesystems import FileSystems

    from remoteclip_jax.data import convert_annotations as convert

    index, items = element
    results = convert._convert_chunk(items, kwargs)
    with FileSystems.create(_chunk_path(temp_dir, index)) as f:
        f.write(msgpack.packb(results, use_bin_type=True))
    return index


def _load(path: str):
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:
        results = msgpack.unpackb(f.read(), raw=False)
    for record, skipped in results:
        yield record, (tuple(skipped) if skipped is not None else None)


def pipeline_args(workers: int, beam_options: str = "") -> list[str]:
    """Beam's pipeline arguments: `beam_options` (shell words), else the DirectRunner with
    `workers` processes."""
    args = shlex.split(beam_options)
    if not any(a.startswith("--runner") for a in args):
        args += ["--runner=DirectRunner", f"--direct_num_workers={workers}",
                 "--direct_running_mode=" + ("multi_processing" if workers > 1 else "in_memory")]
    return args


def converted(items: Iterable, kwargs: dict[str, Any], *, workers: int, temp_root: str,
              beam_options: str = ""):
    """`_convert_one` of each item, in input order, computed by a Beam pipeline.

    Args:
        items: the reader's annotated images.
        kwargs: `_convert_one`'s keyword arguments.
        workers: DirectRunner processes (when `beam_options` names no runner).
        temp_root: where the chunk files go unless `beam_options` set ``--temp_location``.
        beam_options: Beam pipeline options as shell words.
    """
    beam = _import_beam()
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    from remoteclip_jax.data import convert_annotations as convert

    options = PipelineOptions(pipeline_args(workers, beam_options))
    temp_root = options.get_all_options().get("temp_location") or temp_root
    chunks = list(enumerate(convert._chunks(items, CHUNK)))
    temp_dir = f"{temp_root.rstrip('/')}/.beam-tmp-{uuid.uuid4().hex[:12]}"
    FileSystems.mkdirs(temp_dir)
    try:
        with beam.Pipeline(options=options) as pipeline:
            _ = (pipeline
                 | "chunks" >> beam.Create(chunks)
                 | "spread" >> beam.Reshuffle()
                 | "convert" >> beam.Map(_convert_and_store, kwargs=kwargs, temp_dir=temp_dir))
        for index, _ in chunks:
            yield from _load(_chunk_path(temp_dir, index))
    finally:
        FileSystems.delete([temp_dir])
