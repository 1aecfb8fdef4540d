"""grain input pipelines: weighted mixing, seeded shuffle, per-process sharding, decode, augment,
one caption per image or every caption per epoch, tokenise, batch, multiprocess prefetch,
checkpointable state.

Training data flow (everything before the last stage is cheap integer index arithmetic; images
are read and decoded only for the indices this process will actually use)::

    sources --(weights)--> one epoch = every example of each source, `weight` times, as
    (source, index, copy) triples --shuffle(seed, epoch)--> repeat(epochs)
    --> slice [process_index::process_count] --> read + decode + augment + pick caption + tokenise
    --> drop unreadable images (counted) --> batch --> mp_prefetch(num_workers) --> iterator

What an epoch holds is each source's ``pairs`` key. "image" (the default): every image once, with
one of its captions drawn at random each epoch. "caption": every (image, caption) pair once, as a
caption CSV with one row per caption gives it to ITRA's and open_clip's loaders; an image with
``k`` non-blank captions then appears ``k`` times per epoch, copy ``j`` with caption ``j``.
Counting the captions takes one pass over the source when the pipeline is built: free for the
caption-file kinds (their items are in memory), one read of every record (no image decoding) for
record shards and webdataset tars.

Determinism: the batches depend only on (sources, weights, seed, batch size, process index and
count, num_workers). With ``pairs="image"`` the caption of an image in epoch ``e`` is drawn from
``(seed, e, source, index, copy)``; the augmentation comes from ``(seed, global position)``;
neither depends on timing, threads or workers. Changing ``num_workers`` changes which images share a batch
(grain batches inside each worker), so resume with the same ``num_workers``.

Weights: ``weight`` is how many times per epoch each example (an image, or a pair with
``pairs="caption"``) of a source is used. 1.0 (the default) everywhere means a plain
concatenation, each example exactly once per epoch; 2.0 doubles a source; 0.5 uses a fresh random
half of it each epoch. ``examples_per_epoch = sum(round(w * n))``, n = images or pairs.

Checkpointing: the returned iterator is a grain ``DatasetIterator``; save ``it.get_state()`` (a
JSON-serialisable dict) with the train state and call ``it.set_state(state)`` on a fresh iterator
built with the same arguments to resume. With orbax, either
``remoteclip_jax.checkpoint`` (``IteratorStateSave(it.get_state())``), or grain's own handler,
``ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it))`` to save and
``grain.checkpoint.CheckpointRestore(it)`` to restore in place (grain 0.2.18; it names the file
``process_{i}-of-{n}.json`` by ``jax.process_index()``).

Bad input: an image that cannot be read or decoded (or has no non-blank caption) is skipped, never
a crash mid-epoch; ``it.stats`` counts the skips and keeps their paths and reasons. An empty
source is an error at construction.

Worker processes are spawned (grain's multiprocessing uses spawn and cloudpickle), so scripts that use ``num_workers > 0`` need an
``if __name__ == "__main__":`` guard, and ``absl.flags.FLAGS.mark_as_parsed()`` outside
``absl.app.run``. Call ``it.close()`` when done. Nothing here imports jax: the process index and
count are passed in as ints.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator, Sequence

import grain
import numpy as np
from PIL import Image

from remoteclip_jax.data import sources as source_registry
from remoteclip_jax.data.images import open_rgb
from remoteclip_jax.errors import ConfigError, DataError
from remoteclip_jax.files import is_remote

# Stream ids for np.random.default_rng seeds, so caption and augmentation draws never collide.
_CAPTION_STREAM = 1
_AUGMENT_STREAM = 2
_WEIGHT_STREAM = 3
_MAX_SKIPS_KEPT = 1000
# This many unreadable inputs in a row means the data is broken, not a few bad files.
_MAX_CONSECUTIVE_SKIPS = 1000
# Reader threads per process when a training source is in a bucket (gs://...).
REMOTE_READ_THREADS = 16


# --- stats of skipped inputs ---------------------------------------------------------------------


@dataclasses.dataclass
class PipelineStats:
    """What an iterator skipped. ``skipped`` keeps the first 1000 (key, reason) pairs."""
    num_examples: int = 0
    num_batches: int = 0
    num_skipped: int = 0
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def add_skipped(self, items: Sequence[tuple[str, str]]) -> None:
        self.num_skipped += len(items)
        room = _MAX_SKIPS_KEPT - len(self.skipped)
        self.skipped.extend(tuple(x) for x in items[:max(room, 0)])

    def summary(self) -> str:
        """One line per skipped input after a totals line, for logs."""
        lines = [f"{self.num_examples} examples in {self.num_batches} batches, "
                 f"{self.num_skipped} inputs skipped"]
        lines += [f"  skipped {key}: {reason}" for key, reason in self.skipped]
        if self.num_skipped > len(self.skipped):
            lines.append(f"  ... and {self.num_skipped - len(self.skipped)} more")
        return "\n".join(lines)


# --- per-element loading (runs in grain workers) --------------------------------------------------


def decode_image(item: dict[str, Any]) -> Image.Image:
    """The RGB PIL image of a source item (``image`` bytes/array or ``path``), fully loaded."""
    image = item.get("image")
    return open_rgb(image if image is not None else item["path"],
                    name=str(item.get("_key") or item.get("path") or "") or None)


def _item_key(item: dict[str, Any] | None, fallback: str) -> str:
    if not item:
        return fallback
    return str(item.get("_key") or item.get("path") or fallback)


def _skip(key: str, error: BaseException | str) -> dict[str, Any]:
    from remoteclip_jax.errors import UserError

    if isinstance(error, str) or isinstance(error, UserError):
        reason = str(error)  # already says which file and what is wrong
    else:
        reason = f"{type(error).__name__}: {error}"
    return {"_skip": (key, reason)}


def usable_captions(item: dict[str, Any]) -> list[str]:
    """The captions training can use: the non-blank strings of ``item["captions"]``."""
    return [c for c in item.get("captions", ()) if isinstance(c, str) and c.strip()]


class _TrainLoader:
    """(global position, source id, index, copy) -> {image, text} or a skip marker.

    ``every_caption[sid]`` says how source ``sid`` picks the caption: copy ``j`` takes caption
    ``j`` (its epoch view lists every pair), or a seeded random draw per epoch.
    """

    def __init__(self, sources, names, *, every_caption, seed, epoch_length, image_size,
                 context_length, mean, std, with_metadata):
        self.sources = sources
        self.names = names
        self.every_caption = list(every_caption)
        self.seed = seed
        self.epoch_length = epoch_length
        self.image_size = image_size
        self.context_length = context_length
        self.mean, self.std = mean, std
        self.with_metadata = with_metadata
        self._transform = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_transform"] = None  # rebuilt in each worker
        return state

    def transform(self):
        if self._transform is None:
            from remoteclip_jax.transforms import image_transform

            kwargs = {k: v for k, v in (("mean", self.mean), ("std", self.std)) if v is not None}
            self._transform = image_transform(self.image_size, train=True, **kwargs)
        return self._transform

    def __call__(self, element) -> dict[str, Any]:
        from remoteclip_jax.tokenizer import tokenize

        position, sid, index, copy = (int(x) for x in element)
        epoch = position // self.epoch_length
        fallback = f"{self.names[sid]}[{index}]"
        transform = self.transform()  # outside the try: a broken transform must fail loudly
        item = None
        try:
            item = self.sources[sid][index]
            captions = usable_captions(item)
            if not captions:
                return _skip(_item_key(item, fallback), "no non-blank caption")
            image = decode_image(item)
        except Exception as e:  # an unreadable input is skipped and reported, never fatal
            return _skip(_item_key(item, fallback), e)
        if self.every_caption[sid]:
            caption = captions[copy % len(captions)]
        else:
            rng = np.random.default_rng([self.seed, _CAPTION_STREAM, epoch, sid, index, copy])
            caption = captions[int(rng.integers(len(captions)))]
        pixels = transform(image, np.random.default_rng([self.seed, _AUGMENT_STREAM, position]))
        out = {"images": np.asarray(pixels, np.float32),
               "texts": tokenize([caption], self.context_length)[0].astype(np.int32)}
        if self.with_metadata:
            out.update(source_id=np.int32(sid), index=np.int64(index), epoch=np.int64(epoch),
                       caption=caption)
        return out


# --- skipping and stats as grain iterator stages -----------------------------------------------------


class _BatchValidIterator(grain.DatasetIterator):
    """Batches good elements, dropping skip markers and carrying their reports in ``_skipped``.

    At the end of the stream, reports not yet attached to a batch come out in a report-only
    batch (``{"_skipped": [...]}``, no arrays), which `TrainIterator` absorbs. Its state is the
    parent's: a batch always ends right after its last good element.
    """

    def __init__(self, parent, batch_size: int, stacker: "_Stacker"):
        super().__init__(parent)
        self._batch_size = batch_size
        self._stacker = stacker

    def __next__(self):
        good, skipped, run = [], [], 0
        while len(good) < self._batch_size:
            try:
                element = next(self._parent)
            except StopIteration:
                if skipped:
                    return {"_skipped": skipped}
                raise
            if "_skip" in element:
                skipped.append(element["_skip"])
                run += 1
                if run >= _MAX_CONSECUTIVE_SKIPS:
                    key, reason = element["_skip"]
                    raise DataError(
                        f"{run} inputs in a row could not be read (last: {key}: {reason}); "
                        "the data is unusable")
                continue
            run = 0
            good.append(element)
        batch = self._stacker(good)
        batch["_skipped"] = skipped
        return batch

    def get_state(self):
        return self._parent.get_state()

    def set_state(self, state):
        self._parent.set_state(state)


class _BatchValid(grain.IterDataset):
    """Full batches of good elements (the remainder is dropped); see `_BatchValidIterator`."""

    def __init__(self, parent, batch_size: int):
        super().__init__(parent)
        self._batch_size = batch_size
        self._stacker = _Stacker()

    def enable_shared_memory_output(self) -> None:
        # Called by grain in worker processes (grain's SupportsSharedMemoryOutput protocol).
        self._stacker.enable_shared_memory_output()

    def __iter__(self):
        return _BatchValidIterator(self._parent.__iter__(), self._batch_size, self._stacker)


class _Stacker:
    """Stacks a list of element dicts: arrays along a new first axis, strings into lists.

    In a worker process grain calls `enable_shared_memory_output`, and the stacked arrays are
    then written straight into shared memory (saving one copy of every batch on its way to the
    main process).
    """

    def __init__(self):
        self._to_shared_memory = False

    def enable_shared_memory_output(self) -> None:
        self._to_shared_memory = True

    def __call__(self, elements: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {}
        for key in elements[0]:
            values = [e[key] for e in elements]
            if isinstance(values[0], str):
                batch[key] = values
            elif self._to_shared_memory:
                first = np.asarray(values[0])
                out = grain.multiprocessing.SharedMemoryArray((len(values), *first.shape),
                                                             first.dtype)
                batch[key] = np.stack(values, out=out)
            else:
                batch[key] = np.stack(values)
        return batch


class TrainIterator(grain.DatasetIterator):
    """The training iterator: batches of ``images`` (B, H, W, 3) float32 and ``texts`` (B, L)
    int32, with `stats` of skipped inputs, `examples_per_epoch`, and grain's
    ``get_state``/``set_state``/``close``.
    """

    def __init__(self, parent, *, examples_per_epoch: int, global_batch_size: int,
                 num_batches: int | None):
        super().__init__(parent)
        self.stats = PipelineStats()
        self.examples_per_epoch = examples_per_epoch
        self.global_batch_size = global_batch_size
        self.num_batches = num_batches

    @property
    def steps_per_epoch(self) -> int:
        """Full global batches per epoch: ``examples_per_epoch // global_batch_size``."""
        return self.examples_per_epoch // self.global_batch_size

    def __next__(self) -> dict[str, Any]:
        batch = next(self._parent)
        self.stats.add_skipped(batch.pop("_skipped", []))
        while "texts" not in batch:  # a report-only batch from the end of a worker's stream
            batch = next(self._parent)
            self.stats.add_skipped(batch.pop("_skipped", []))
        self.stats.num_batches += 1
        self.stats.num_examples += len(batch["texts"])
        return batch

    def get_state(self):
        return self._parent.get_state()

    def set_state(self, state):
        self._parent.set_state(state)


class _WithTrainIterator(grain.IterDataset):
    def __init__(self, parent, **info):
        super().__init__(parent)
        self._info = info

    def __iter__(self):
        return TrainIterator(self._parent.__iter__(), **self._info)


# --- the epoch structure (integer arithmetic only) -------------------------------------------------


class _ExampleTriple:
    """Position ``j`` in a source's epoch view and example ``e`` -> (source id, index, copy).

    Without per-item caption counts an example is an image: copy = how many times the view has
    wrapped around. With counts, example ``e`` is pair (items[e], first[e]) and a wrap adds the
    image's caption count, so every copy of an image names a different caption slot.
    """

    def __init__(self, sid: int, n: int, counts: np.ndarray | None):
        self.sid, self.n = sid, n
        self.items = self.caption = self.per_item = None
        if counts is not None:
            self.items = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
            starts = np.cumsum(counts) - counts
            self.caption = np.arange(n, dtype=np.int64) - np.repeat(starts, counts)
            self.per_item = np.repeat(counts, counts)

    def __call__(self, j: int, e: int) -> tuple[int, int, int]:
        wraps = j // self.n
        if self.items is None:
            return self.sid, int(e), wraps
        return (self.sid, int(self.items[e]),
                int(self.caption[e] + wraps * self.per_item[e]))


def _epoch_view(sid: int, n_items: int, weight: float, seed: int,
                caption_counts: np.ndarray | None = None) -> grain.MapDataset:
    """One epoch's (source id, index, copy) triples for a source of ``n_items`` images.

    Args:
        sid: the source's id in the pipeline.
        n_items: images in the source.
        weight: uses of each example per epoch (fractions take a fresh random subset each epoch).
        seed: the pipeline seed.
        caption_counts: None (an example is an image) or, per image, how many pairs it makes
            (an example is a pair; each image appears that many times, copy j = caption j).
    """
    counts = None
    n = n_items
    if caption_counts is not None:
        counts = np.asarray(caption_counts, np.int64)
        n = int(counts.sum())
    count = round(weight * n)
    copies = math.ceil(count / n)
    view = grain.MapDataset.range(n)
    if count % n:
        # A fractional weight takes a random subset; `repeat` above reseeds it every epoch.
        view = view.shuffle(seed=_derived_seed(seed, _WEIGHT_STREAM, sid))
    if copies > 1:
        view = view.repeat(copies)
    view = view.slice(slice(0, count))
    return view.map_with_index(_ExampleTriple(sid, n, counts))


def caption_counts(source) -> np.ndarray:
    """Per image, the (image, caption) pairs it makes: its non-blank captions, at least 1.

    An image without a usable caption still counts once, so that training skips and reports it
    as it does with one caption per image. Items are read without decoding their images
    (`sources.item_metadata`).
    """
    return np.asarray([max(len(usable_captions(source_registry.item_metadata(source, i))), 1)
                       for i in range(len(source))], np.int64)


def _examples_of(source, spec: dict[str, Any]) -> tuple[int, np.ndarray | None]:
    """(examples of one epoch at weight 1, per-image pair counts or None) of a built source."""
    if spec["pairs"] == "caption":
        counts = caption_counts(source)
        return int(counts.sum()), counts
    return len(source), None


def _derived_seed(*parts: int) -> int:
    return int(np.random.default_rng(list(parts)).integers(2**31))


def _add_position(position: int, triple) -> tuple[int, int, int, int]:
    return (position, *triple)


def make_train_dataset(sources: Sequence[dict[str, Any]], *, batch_size_per_process: int,
                       image_size: int, seed: int, context_length: int = 77,
                       num_workers: int = 0, process_index: int = 0, process_count: int = 1,
                       epochs: int | None = None, num_threads: int | None = None,
                       per_worker_buffer_size: int = 2, mean: Sequence[float] | None = None,
                       std: Sequence[float] | None = None,
                       with_metadata: bool = False,
                       where: Sequence[str] | None = None) -> grain.IterDataset:
    """The training pipeline as a grain ``IterDataset``; see `make_train_iterator`."""
    if not sources:
        raise DataError("no training sources given")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    if batch_size_per_process < 1:
        raise ValueError(f"batch_size_per_process must be >= 1, got {batch_size_per_process}")
    built, names, views, every_caption = [], [], [], []
    where = list(where or [f"source {i}" for i in range(len(sources))])
    for spec, place in zip(sources, where):
        spec = source_registry.normalize_spec(spec, place)
        weight = float(spec["weight"])
        if weight < 0 or not math.isfinite(weight):
            raise ConfigError(f"{place}.weight={weight}: must be >= 0")
        if weight == 0:
            continue
        source = source_registry.build_source(spec, place)
        if len(source) == 0:
            raise DataError(f"{source_registry.source_name(spec)}: empty source")
        n, counts = _examples_of(source, spec)
        if round(weight * n) == 0:
            raise ConfigError(
                f"source {spec!r}: weight {weight} x {n} examples rounds to 0")
        sid = len(built)
        built.append(source)
        names.append(source_registry.source_name(spec))
        every_caption.append(counts is not None)
        views.append(_epoch_view(sid, len(source), weight, seed, counts))
    if not built:
        raise DataError("every training source has weight 0")

    epoch = views[0] if len(views) == 1 else grain.MapDataset.concatenate(views)
    epoch_length = len(epoch)
    global_batch = batch_size_per_process * process_count
    stream = epoch.shuffle(seed=_derived_seed(seed, 0)).repeat(epochs)
    stream = stream.map_with_index(_add_position)
    stream = stream.slice(slice(process_index, None, process_count))
    num_batches = None
    if epochs is not None:
        # Every process gets the same number of full batches, or synchronous training hangs.
        num_batches = (epochs * epoch_length) // global_batch
        if num_batches == 0:
            raise DataError(f"{epochs} epoch(s) of {epoch_length} examples is less than "
                                    f"one global batch of {global_batch}")
        stream = stream.slice(slice(0, num_batches * batch_size_per_process))
    loader = _TrainLoader(built, names, every_caption=every_caption, seed=seed,
                          epoch_length=epoch_length,
                          image_size=image_size, context_length=context_length, mean=mean,
                          std=std, with_metadata=with_metadata)
    stream = stream.map(loader)
    if num_threads is None:
        # A record in a bucket is one ranged GET (tens of ms): more reads in flight hide that.
        remote = any(is_remote(s.get("path", "")) for s in sources if s.get("kind") != "tfds")
        num_threads = REMOTE_READ_THREADS if remote else 2
    ds = stream.to_iter_dataset(grain.ReadOptions(
        num_threads=num_threads, prefetch_buffer_size=max(2 * batch_size_per_process, 8)))
    ds = _BatchValid(ds, batch_size_per_process)
    if num_workers > 0:
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=num_workers, per_worker_buffer_size=per_worker_buffer_size))
    return _WithTrainIterator(ds, examples_per_epoch=epoch_length, global_batch_size=global_batch,
                              num_batches=num_batches)


def make_train_iterator(sources: Sequence[dict[str, Any]], *, batch_size_per_process: int,
                        image_size: int, seed: int, context_length: int = 77,
                        num_workers: int = 0, process_index: int = 0, process_count: int = 1,
                        epochs: int | None = None, **kwargs) -> TrainIterator:
    """An iterator of training batches for this process.

    Args:
        sources: source dicts (``kind``, ``path``, ``weight``, ``split``; see
            `remoteclip_jax.data.sources`).
        batch_size_per_process: examples per batch on this host (global batch / process_count).
        image_size: model input side; images get open_clip's train transform
            (RandomResizedCrop scale 0.9-1.0, bicubic, normalised).
        seed: seed for shuffling, caption choice and augmentation.
        context_length: token sequence length.
        num_workers: grain worker processes (0: decode in this process, with threads).
        process_index: ``jax.process_index()``, passed in so that workers never touch jax.
        process_count: ``jax.process_count()``.
        epochs: stop after this many epochs (rounded down to whole global batches), or None to
            repeat forever (recommended for training by steps: then a skipped image never makes
            processes disagree on the number of batches).
        **kwargs: ``num_threads`` (reader threads per process; default 2, or
            `REMOTE_READ_THREADS` when a source is in a bucket),
            ``per_worker_buffer_size`` (batches, default 2), ``mean``/``std`` (normalisation),
            ``with_metadata`` (add ``source_id``, ``index``, ``epoch`` and ``caption``).

    Returns:
        A `TrainIterator` yielding ``{"images": float32 (B, H, W, 3), "texts": int32 (B, L)}``,
        with ``.examples_per_epoch``, ``.steps_per_epoch``, ``.stats``, ``.get_state()``,
        ``.set_state()`` and ``.close()``.
    """
    ds = make_train_dataset(sources, batch_size_per_process=batch_size_per_process,
                            image_size=image_size, seed=seed, context_length=context_length,
                            num_workers=num_workers, process_index=process_index,
                            process_count=process_count, epochs=epochs, **kwargs)
    return iter(ds)


def examples_per_epoch(sources: Sequence[dict[str, Any]]) -> int:
    """``sum(round(weight * n))``, n = images or (``pairs="caption"``) pairs of each source:
    what one training epoch holds (all processes)."""
    total = 0
    for spec in map(source_registry.normalize_spec, sources):
        weight = float(spec["weight"])
        if weight > 0:
            total += round(weight * _examples_of(source_registry.build_source(spec), spec)[0])
    return total


# --- evaluation ------------------------------------------------------------------------------------


class _EvalLoader:
    """Source index -> eval-transformed image with its captions, or a masked placeholder."""

    def __init__(self, source, name, image_size, mean, std):
        self.source, self.name, self.image_size = source, name, image_size
        self.mean, self.std = mean, std
        self._transform = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_transform"] = None
        return state

    def __call__(self, index) -> dict[str, Any]:
        index = int(index)
        if self._transform is None:
            from remoteclip_jax.transforms import image_transform

            kwargs = {k: v for k, v in (("mean", self.mean), ("std", self.std)) if v is not None}
            self._transform = image_transform(self.image_size, train=False, **kwargs)
        item = None
        out = {"index": np.int64(index), "mask": np.bool_(True), "_skipped": []}
        try:
            item = self.source[index]
            image = decode_image(item)
        except Exception as e:  # an unreadable input is masked and reported, never fatal
            image = None
            out["_skipped"] = [_skip(_item_key(item, f"{self.name}[{index}]"), e)["_skip"]]
            out["images"] = np.zeros((self.image_size, self.image_size, 3), np.float32)
            out["mask"] = np.bool_(False)
        if image is not None:
            out["images"] = np.asarray(self._transform(image), np.float32)
        item = item or {}
        out["captions"] = [c for c in item.get("captions", ()) if isinstance(c, str)]
        out["label"] = str(item.get("label", ""))
        out["image_id"] = str(item.get("image_id", ""))
        return out


def _pad_element(image_size: int) -> dict[str, Any]:
    return {"index": np.int64(-1), "mask": np.bool_(False), "_skipped": [],
            "images": np.zeros((image_size, image_size, 3), np.float32), "captions": [],
            "label": "", "image_id": ""}


def _eval_stack(elements):
    batch = {}
    for key in elements[0]:
        values = [e[key] for e in elements]
        if key == "_skipped":
            batch[key] = [x for v in values for x in v]
        elif isinstance(values[0], (list, str)):
            batch[key] = values
        else:
            batch[key] = np.stack(values)
    return batch


class EvalData:
    """An evaluation dataset: this process's images, in padded batches.

    With ``num_workers=0`` batches follow source order; with workers, each worker batches its
    own slice, so batches interleave: always use ``index`` to match images to the source.

    Iterating yields ``{"images": float32 (B, H, W, 3), "index": int64 (B,) (position in the
    source, -1 for padding), "mask": bool (B,) (False for padding and unreadable images),
    "captions": list of lists of str, "label": list[str], "image_id": list[str]}``. Every process
    yields the same number of batches (the last ones padded). After iterating, `stats` lists
    unreadable images.

    Attributes:
        source: the underlying random-access source (``source[i]`` gives captions and labels
            without decoding an image when the evaluator needs only the text).
        num_images: images in the whole source (all processes).
        num_batches: batches per process.
    """

    def __init__(self, source, name, *, image_size, batch_size, num_workers, process_index,
                 process_count, mean, std):
        self.source = source
        self.num_images = len(source)
        self.batch_size = batch_size
        per_process = math.ceil(self.num_images / process_count)
        self.num_batches = math.ceil(per_process / batch_size)
        loader = _EvalLoader(source, name, image_size, mean, std)
        indices = grain.MapDataset.range(self.num_images).slice(
            slice(process_index, None, process_count))
        padding = self.num_batches * batch_size - len(indices)
        ds = indices.map(loader)
        if padding:
            pad = grain.MapDataset.source([_pad_element(image_size)] * padding)
            ds = grain.MapDataset.concatenate([ds, pad])
        self._dataset = ds.to_iter_dataset(grain.ReadOptions(num_threads=2,
                                                             prefetch_buffer_size=2 * batch_size))
        self._dataset = self._dataset.batch(batch_size, batch_fn=_eval_stack)
        if num_workers > 0:
            self._dataset = self._dataset.mp_prefetch(grain.MultiprocessingOptions(
                num_workers=num_workers, per_worker_buffer_size=2))
        self.stats = PipelineStats()

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.stats = PipelineStats()
        it = iter(self._dataset)
        try:
            for batch in it:
                self.stats.add_skipped(batch.pop("_skipped"))
                self.stats.num_batches += 1
                self.stats.num_examples += int(batch["mask"].sum())
                yield batch
        finally:
            it.close()


def make_eval_dataset(source: dict[str, Any], *, image_size: int, batch_size: int,
                      num_workers: int = 0, process_index: int = 0, process_count: int = 1,
                      mean: Sequence[float] | None = None,
                      std: Sequence[float] | None = None) -> EvalData:
    """Eval-transformed images of one source (no shuffle, no augmentation), in padded batches.

    Every image of the source appears exactly once over all processes; ``index`` says which.

    Args:
        source: a source dict (see `remoteclip_jax.data.sources`); ``weight`` is ignored.
        image_size: model input side (open_clip eval transform: resize shortest side, bicubic,
            centre crop, normalise).
        batch_size: images per batch on this process.
        num_workers: grain worker processes.
        process_index: this process; images ``process_index::process_count`` are its share.
        process_count: number of processes.
        mean: normalisation mean (default: the transform's, OpenAI CLIP's).
        std: normalisation std.

    Returns:
        An `EvalData` (iterable of batches, with `stats`, `source`, `num_images`).
    """
    built = source_registry.build_source(source)
    if len(built) == 0:
        raise DataError(f"{source_registry.source_name(source)}: empty source")
    return EvalData(built, source_registry.source_name(source), image_size=image_size,
                    batch_size=batch_size, num_workers=num_workers, process_index=process_index,
                    process_count=process_count, mean=mean, std=std)
