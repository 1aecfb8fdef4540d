"""Reads PyTorch `.pt` state dicts as numpy arrays, without importing torch.

A `torch.save` file (since torch 1.6) is a zip archive: `<root>/data.pkl` pickles the object,
and every tensor's storage lies raw in `<root>/data/<key>`. Only plain state dicts are read
here (tensors, dicts, lists, numbers): anything else, such as a TorchScript module, is refused
with a message that says what the file is.
"""
from __future__ import annotations

from remoteclip_jax.errors import WeightsError
import collections
import io
import pickle
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}



class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage, offset, size, stride, *unused):
    del unused
    if not size:
        return storage[offset].copy()
    itemsize = storage.dtype.itemsize
    return np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)).copy()


def _rebuild_parameter(data, *unused):
    del unused
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, root: str, path: str):
        super().__init__(file)
        self._archive, self._root, self._path = archive, root, path
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name == "Size":
            return tuple
        raise WeightsError(
            f"{self._path}: holds a pickled {module}.{name}, not a plain state dict of tensors; "
            "load it with torch and save `model.state_dict()`")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != "storage":
            raise WeightsError(f"{self._path}: unknown persistent id {kind!r}")
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else None
        if dtype is None:
            raise WeightsError(f"{self._path}: untyped storage (torch>=2.x dtype-less format)")
        if key not in self._storages:
            raw = self._archive.read(f"{self._root}/data/{key}")
            self._storages[key] = np.frombuffer(raw, dtype=dtype, count=numel)
        return self._storages[key]


def load(path: str) -> Any:
    """Loads a `torch.save` zip archive into numpy arrays (the nested object it pickled)."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(8)
        if head[:2] == b"\x80\x02" or head[:1] == b"\x80":
            raise WeightsError(f"{path}: legacy (pre-1.6) torch pickle; re-save it with a recent torch")
        raise WeightsError(f"{path}: not a torch checkpoint (not a zip archive; truncated or another format)")
    try:
        archive = zipfile.ZipFile(path)
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise WeightsError(f"{path}: damaged zip archive ({e}); the file may be truncated") from e
    pickles = [n for n in names if n.endswith("/data.pkl")]
    if any(n.endswith("/constants.pkl") for n in names) or any("/code/" in n for n in names):
        raise WeightsError(
            f"{path}: a TorchScript archive (OpenAI's original CLIP format), not a state dict; "
            "install torch (`pip install torch==2.14.1`) to read it, or re-save its state_dict()")
    if len(pickles) != 1:
        raise WeightsError(f"{path}: zip archive without a torch data.pkl; not a torch checkpoint")
    root = pickles[0][: -len("/data.pkl")]
    try:
        with archive.open(pickles[0]) as f:
            return _Unpickler(io.BytesIO(f.read()), archive, root, path).load()
    except (KeyError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise WeightsError(f"{path}: damaged torch checkpoint ({type(e).__name__}: {e})") from e
