"""What a model directory must say besides its weights, defined once for every layout.

The weights alone cannot tell the activation (GELU and QuickGELU have identical shapes), nor which
named model or preset they belong to, nor where they came from. `ModelInfo` holds these facts. Our
orbax directories store it as `model.json`; the readers of Hugging Face and open_clip directories
build the same object from those formats' own config files, so every reader returns one type.

`model.json` (format version 1):

    {"format": "remoteclip_jax.model", "format_version": 1,
     "model": "ViT-B-32-quickgelu" | null,      # model or preset name, when one is known
     "config": {...},                           # the complete open_clip-style model config
     "activation": "quick_gelu" | "gelu",       # repeats config["quick_gelu"] for readers
     "logit_bias": false,                       # whether the weights hold a SigLIP logit_bias
     "source": "path/or/description" | null}

Files written before versions existed (`model`, `config`, `activation` only) read as version 0.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

from remoteclip_jax.errors import UserError, WeightsError
from remoteclip_jax.files import write_json

FORMAT = "remoteclip_jax.model"
FORMAT_VERSION = 1
FILE_NAME = "model.json"


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """The facts about a model the weights cannot carry.

    Attributes:
      config: complete open_clip-style config (`remoteclip_jax.models.model_config` output).
      name: the model or preset name it was built from, or None for a custom config.
      logit_bias: whether the variables hold a `logit_bias` parameter (SigLIP-style models).
      source: where the weights came from (a file, a directory), for the record.
    """

    config: dict[str, Any]
    name: str | None = None
    logit_bias: bool = False
    source: str | None = None

    @property
    def quick_gelu(self) -> bool:
        return bool(self.config["quick_gelu"])

    @property
    def activation(self) -> str:
        return "quick_gelu" if self.quick_gelu else "gelu"

    @property
    def model(self) -> str | dict[str, Any]:
        """What `create_model` takes: the name when known, else the config."""
        return self.name or self.config

    @property
    def display_name(self) -> str:
        return self.name or "custom config"

    @classmethod
    def from_model(cls, name_or_config: str | Mapping, *, variables: Mapping | None = None,
                   source: str | None = None) -> "ModelInfo":
        """Builds the record for a model name (or preset, or config dict) and its variables."""
        from remoteclip_jax.models import model_config
        name = name_or_config if isinstance(name_or_config, str) else None
        config = model_config(name_or_config if name else dict(name_or_config))
        has_bias = bool(variables is not None and "logit_bias" in variables.get("params", {}))
        return cls(config=_plain(config), name=name or known_model_name(config),
                   logit_bias=has_bias, source=source)

    def replace(self, **changes) -> "ModelInfo":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "model": self.name,
                "config": self.config, "activation": self.activation,
                "logit_bias": self.logit_bias, "source": self.source}

    @classmethod
    def from_json(cls, data: Mapping, origin: str = FILE_NAME) -> "ModelInfo":
        """Parses a `model.json` payload (version 0 or 1), checking the activation agrees."""
        from remoteclip_jax.models import model_config
        if not isinstance(data, Mapping) or not (data.get("model") or data.get("config")):
            raise WeightsError(f"{origin}: needs a 'model' name or a 'config' dict")
        version = int(data.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise WeightsError(f"{origin}: format_version {version} is newer than this "
                                 f"remoteclip_jax reads ({FORMAT_VERSION}); upgrade remoteclip_jax")
        config = model_config(data["config"] if data.get("config") else data["model"])
        activation = data.get("activation")
        expected = "quick_gelu" if config["quick_gelu"] else "gelu"
        if activation not in (None, expected):
            raise WeightsError(f"{origin}: activation {activation!r} contradicts the config's "
                                 f"quick_gelu={config['quick_gelu']}; fix one of them")
        return cls(config=_plain(config), name=data.get("model"),
                   logit_bias=bool(data.get("logit_bias", False)), source=data.get("source"))

    def save(self, directory: str) -> str:
        path = os.path.join(directory, FILE_NAME)
        write_json(path, self.to_json(), indent=2)
        return path

    @classmethod
    def load(cls, directory: str) -> "ModelInfo":
        path = os.path.join(directory, FILE_NAME)
        data = read_json(path, WeightsError,
                         "not found; not a directory written by `remoteclip-jax import-weights`")
        return cls.from_json(data, path)


def source_record(path: str) -> str:
    """What a model card and model.json say the weights came from: the file's name and
    fingerprint (never the local path, which means nothing elsewhere), or the folder's name."""
    path = os.path.normpath(os.fspath(path))
    if os.path.isfile(path):
        from remoteclip_jax.weights.fingerprint import file_fingerprint
        return f"{os.path.basename(path)} (sha256 {file_fingerprint(path)})"
    return os.path.basename(path)


def model_argument(value: str | None, flag: str = "--model"):
    """A model or preset name as given, or the config dict of a `.json` file (custom sizes)."""
    if value is None or not value.endswith(".json"):
        return value
    from remoteclip_jax.errors import ConfigError
    return read_json(value, ConfigError, f"model config file ({flag}) not found")


def read_json(path: str, error: type[UserError], missing: str) -> Any:
    """Parses a JSON file; a missing or malformed file raises `error` in one line.

    Args:
      path: the file.
      error: the UserError subclass to raise.
      missing: what to say after the path when the file does not exist.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except json.JSONDecodeError as e:
        raise error(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None


def known_model_name(config: Mapping) -> str | None:
    """The built-in model name whose complete config equals `config`, or None."""
    from remoteclip_jax.models import MODEL_CONFIGS, model_config
    target = _plain(model_config(dict(config)))
    for name in MODEL_CONFIGS:
        if _plain(model_config(name)) == target:
            return name
    return None


def _plain(x):
    """JSON-shaped copy: frozen dicts to dicts, tuples to lists (so configs compare and dump)."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x
