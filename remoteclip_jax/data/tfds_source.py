"""Source kind ``tfds``: a prepared TensorFlow Datasets dataset, read by random access.

``{kind: tfds, path: eurosat/rgb, split: train}`` reads the dataset through
``tfds.data_source`` (array_record files, random access, picklable into grain workers), so
training and every evaluation read it like any other source. ``path`` is TFDS's name,
``NAME[/CONFIG][:VERSION]``; ``data_dir`` is where it was prepared ("" = TFDS's default,
``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``). Nothing is downloaded here: prepare the
dataset once, in array_record format (``tfds build eurosat/rgb --file_format=array_record``).

Items: ``image`` (the stored encoded bytes, decoded by the pipeline like an image file; or a
uint8 array for a tensor feature), ``label`` (a ClassLabel's name, so TFDS's EuroSAT, RESISC45
and UC Merced labels are the folder names the paper's class-name tables know), ``captions``
(a Text feature or a sequence of them) and ``image_id`` (``id_key``'s value, e.g. the file
name, which orders the paper's per-class split; else the item's position).

Needs the ``tfds`` extra; numpy only otherwise (runs inside grain workers).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from remoteclip_jax.errors import ConfigError, DataError
from remoteclip_jax.lazy import optional_module

INSTALL_HINT = "install tensorflow-datasets (pip install 'remoteclip_jax[tfds]')"
# label_key and id_key at these defaults may name no feature (datasets without labels or file
# names); any other key that names no feature is an error.
OPTIONAL_DEFAULTS = {"label_key": "label", "id_key": "filename"}


def import_tfds():
    """The ``tensorflow_datasets`` module, or a one-line ConfigError saying how to install it."""
    return optional_module("tensorflow_datasets",
                           f"source kind 'tfds' needs TensorFlow Datasets: {INSTALL_HINT}", ConfigError)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _feature(features, key: str):
    """The feature at `key` ("a/b" for a nested one), or None."""
    for part in key.split("/"):
        try:
            features = features[part]
        except (KeyError, TypeError):
            return None
    return features


def _value(example: dict, key: str):
    for part in key.split("/"):
        example = example[part]
    return example


def _text(value) -> str:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TfdsSource:
    """A prepared TFDS split as a source: ``len`` and ``src[i] -> item dict`` (module docstring).

    Raises:
        ConfigError: tensorflow-datasets is not installed.
        DataError: an unknown dataset or split, a dataset not prepared (or not in a random-access
            format) under data_dir, or feature keys it does not have.
    """

    def __init__(self, name: str, split: str = "", data_dir: str = "", image_key: str = "image",
                 label_key: str = "label", caption_key: str = "", id_key: str = "filename"):
        tfds = import_tfds()
        self.name = where = f"tfds:{name}" + (f" (split {split!r})" if split else "")
        try:
            builder = tfds.builder(name, data_dir=data_dir or None)
        except (ValueError, KeyError, OSError) as e:  # DatasetNotFoundError is a ValueError
            raise DataError(f"{where}: {_first_line(e)}") from None
        if not builder.is_prepared():
            raise DataError(
                f"{where}: not prepared under {builder.data_dir_root}; prepare it once with "
                f"`tfds build {name} --data_dir={builder.data_dir_root} "
                "--file_format=array_record` (this source never downloads)")
        features = builder.info.features
        image = _feature(features, image_key)
        if image is None:
            raise DataError(f"{where}: no image feature {image_key!r} (features: "
                            f"{', '.join(features)}); set image_key")
        self._image_is_encoded = isinstance(image, tfds.features.Image)
        if not self._image_is_encoded and np.dtype(image.np_dtype) != np.uint8:
            raise DataError(f"{where}: feature {image_key!r} is {image.np_dtype}, not an image "
                            "(uint8 RGB or grey); set image_key to an image feature")
        for option, key in (("label_key", label_key), ("caption_key", caption_key),
                            ("id_key", id_key)):
            if key and key != OPTIONAL_DEFAULTS.get(option) and _feature(features, key) is None:
                raise DataError(f"{where}: no feature {key!r} (features: {', '.join(features)}); "
                                f"set {option}")
        label = _feature(features, label_key) if label_key else None
        self._label_key = label_key if label is not None else ""
        self._label_names = (list(label.names) if isinstance(label, tfds.features.ClassLabel)
                             else None)
        self._caption_key = caption_key
        self._id_key = id_key if id_key and _feature(features, id_key) is not None else ""
        self._image_key = image_key
        split = split or "+".join(builder.info.splits)  # "" = every split, in TFDS's order
        # Encoded images stay bytes: the pipeline decodes them as it decodes image files.
        decoders = ({image_key: tfds.decode.SkipDecoding()}
                    if self._image_is_encoded and "/" not in image_key else None)
        try:
            self._source = builder.as_data_source(split=split, decoders=decoders)
        except NotImplementedError:
            raise DataError(
                f"{where}: prepared as {builder.info.file_format.value}, which has no random "
                f"access; rebuild it with `tfds build {name} --file_format=array_record`") from None
        except (ValueError, KeyError) as e:
            raise DataError(f"{where}: {_first_line(e)}") from None
        if len(self._source) == 0:
            raise DataError(f"{where}: no examples")

    @property
    def classes(self) -> list[str] | None:
        """The ClassLabel's names in label order, or None (no label, or not a ClassLabel)."""
        return list(self._label_names) if self._label_names is not None else None

    def __len__(self) -> int:
        return len(self._source)

    def _item(self, example: dict, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"captions": []}
        if self._label_key:
            label = _value(example, self._label_key)
            item["label"] = (self._label_names[int(label)] if self._label_names is not None
                             else _text(label))
        if self._caption_key:
            captions = _value(example, self._caption_key)
            if isinstance(captions, (bytes, str)) or np.ndim(captions) == 0:
                captions = [captions]
            item["captions"] = [_text(c) for c in captions]
        item["image_id"] = (_text(_value(example, self._id_key)) if self._id_key
                            else f"{index:08d}")
        item["_key"] = f"{self.name}[{index}] {item['image_id']}"
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        example = self._source[int(index)]
        item = self._item(example, int(index))
        image = _value(example, self._image_key)
        if isinstance(image, (bytes, np.bytes_)):
            item["image"] = bytes(image)
        else:  # a uint8 tensor; (H, W, 1) is grey
            image = np.asarray(image)
            item["image"] = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
        return item

    def metadata(self, index: int) -> dict[str, Any]:
        """Item `index` without its image (the stored bytes are read, not decoded)."""
        return self._item(self._source[int(index)], int(index))

    def __repr__(self) -> str:
        return f"TfdsSource({self.name}, {len(self)} examples)"


def build(spec: dict[str, Any]) -> TfdsSource:
    """The source of a normalized ``tfds`` spec."""
    return TfdsSource(spec["path"], spec["split"], spec["data_dir"], spec["image_key"],
                      spec["label_key"], spec["caption_key"], spec["id_key"])
