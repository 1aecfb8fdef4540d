"""Model directories in three layouts, behind one pair of functions.

    model, variables = rc.load_pretrained("weights/remoteclip-b32")      # any layout below
    rc.save_pretrained(variables, "ViT-B-32-quickgelu", "out/hf", format="hf")

Layouts, told apart by the files present (checked in this order):

  * ours (`"orbax"`): `model.json` (`ModelInfo`) + `variables/` (an orbax checkpoint); what
    `remoteclip-jax import-weights` writes;
  * open_clip (`"open_clip"`): `open_clip_config.json` + `open_clip_model.safetensors`;
  * transformers (`"hf"`): `config.json` + `model.safetensors` (or `pytorch_model.bin`).

`load_pretrained` also reads a single OpenCLIP checkpoint file when told the model name.
"""
from __future__ import annotations

import os
from typing import Mapping

from remoteclip_jax import files
from remoteclip_jax.errors import WeightsError
from remoteclip_jax.weights import hf, hub
from remoteclip_jax.weights.model_info import FILE_NAME as INFO_NAME
from remoteclip_jax.weights.model_info import ModelInfo, source_record
from remoteclip_jax.weights.trees import differences, leaf_shapes

VARIABLES_DIR = "variables"
FORMATS = ("hf", "open_clip", "orbax")


def detect_layout(path: str) -> str:
    """"orbax", "open_clip", "hf" for a model directory, "file" for a checkpoint file.

    Raises:
      WeightsError: the path does not exist, or is a directory of no known layout (the message
        lists what it holds).
    """
    root = files.as_path(path)  # a local path or a bucket's (gs://...), told apart by names
    if root.is_file():
        return "file"
    if not root.is_dir():
        raise WeightsError(f"{path}: no such file or directory")
    found = sorted(child.name for child in root.iterdir())
    if INFO_NAME in found and VARIABLES_DIR in found:
        return "orbax"
    if hub.CONFIG_NAME in found:
        return "open_clip"
    if hf.CONFIG_NAME in found:
        return "hf"
    listing = ", ".join(found[:12]) + (" ..." if len(found) > 12 else "") if found else "nothing"
    raise WeightsError(
        f"{path}: unknown model directory layout (found: {listing}); expected model.json + "
        f"variables/ (remoteclip_jax), open_clip_config.json + open_clip_model.safetensors "
        f"(open_clip) or config.json + model.safetensors (transformers)")


# ---------------------------------------------------------------------------------------------
# Our orbax layout.

def save_orbax(variables: Mapping, directory: str, model: str | Mapping | ModelInfo) -> ModelInfo:
    """Saves Flax variables as an orbax checkpoint plus `model.json`; returns what it recorded."""
    import jax
    import jax.numpy as jnp
    import orbax.checkpoint as ocp
    info = model if isinstance(model, ModelInfo) else ModelInfo.from_model(model, variables=variables)
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(os.path.join(directory, VARIABLES_DIR),
                   jax.tree.map(jnp.asarray, dict(variables)), force=True)
    info.save(directory)  # written last: its presence marks a complete directory
    return info


def load_orbax(directory: str) -> tuple[dict, ModelInfo]:
    """Loads what `save_orbax` wrote: (variables as numpy, ModelInfo)."""
    import jax
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    from remoteclip_jax.models import create_model
    directory = os.path.abspath(directory)
    info = ModelInfo.load(directory)
    model = create_model(info.model)
    s = model.image_size
    # Restoring against the model's abstract tree keeps shapes exact (scalars stay scalars).
    target = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)),
                            jnp.zeros((1, model.context_length), jnp.int32))
    with ocp.StandardCheckpointer() as ckptr:
        path = os.path.join(directory, VARIABLES_DIR)
        # Compare shapes first: orbax reports a mismatch as a page of traceback.
        stored = getattr(ckptr.metadata(path), "item_metadata", None)
        if stored is not None:
            have, want = leaf_shapes(stored), leaf_shapes(target)
            wrong = sorted(set().union(*differences(have, want)))
            if wrong:
                raise WeightsError(
                    f"{directory}: {INFO_NAME} names {info.display_name}, but {VARIABLES_DIR}/ "
                    f"holds weights of another architecture ({len(wrong)} arrays differ, first "
                    f"{wrong[0]}: stored {have.get(wrong[0])}, expected {want.get(wrong[0])}); "
                    f"fix {INFO_NAME} or import the weights again (remoteclip-jax import-weights)")
        variables = ckptr.restore(path, target)
    return jax.device_get(variables), info


# ---------------------------------------------------------------------------------------------
# Any layout.

def read_model_dir(path: str, model: str | Mapping | None = None) -> tuple[dict, ModelInfo]:
    """Reads a model directory of any layout, or an OpenCLIP file, into (variables, ModelInfo).

    Args:
      path: a directory (see the module docstring) or an OpenCLIP `.pt`/`.bin`/`.safetensors`.
      model: required for a file (it fixes the activation); for a directory, optional, and then
        it must describe the same architecture and activation as the directory's config.
    """
    if files.is_remote(path):  # the readers below open local files: read a downloaded copy
        detect_layout(path)
        with files.local_copy(path) as local:
            return read_model_dir(local, model)
    layout = detect_layout(path)
    if layout == "file":
        if model is None:
            raise WeightsError(f"{path}: a checkpoint file does not say its model; give the model "
                                "or preset name (e.g. --model RemoteCLIP-ViT-B-32)")
        from remoteclip_jax.weights import openclip
        variables = openclip.load_openclip(path, model)
        return variables, ModelInfo.from_model(model, variables=variables, source=source_record(path))
    reader = {"orbax": load_orbax, "open_clip": hub.read_hub_dir, "hf": hf.read_hf_dir}[layout]
    variables, info = reader(path)
    if model is not None:
        named = ModelInfo.from_model(model)
        if named.config != info.config:
            raise WeightsError(
                f"{path}: holds {info.display_name} ({info.activation}), not {named.display_name} "
                f"({named.activation}) as requested; drop the model name to use the directory's")
        info = info.replace(name=named.name or info.name)
    return variables, info


def load_pretrained(path: str, model: str | Mapping | None = None):
    """Loads a model and its weights from any directory layout we read, or an OpenCLIP file.

    Args:
      path: our orbax directory, an open_clip hub directory, a transformers CLIPModel directory
        (told apart by their files), or an OpenCLIP checkpoint file.
      model: the model or preset name; required for a file, a consistency check for a directory.

    Returns:
      (model, variables): a `remoteclip_jax.models.CLIP` and its `{"params": ...}` (numpy).

    Raises:
      UserError (one line): unknown layout (listing the files found), unreadable or mismatched
        weights, a config we cannot run.
    """
    from remoteclip_jax.models import create_model
    variables, info = read_model_dir(path, model)
    return create_model(info.model), variables


def save_pretrained(variables: Mapping, name: str | Mapping, out_dir: str, format: str = "hf", *,
                    training: Mapping | None = None, eval_results: Mapping | str | None = None,
                    license: str | None = None, license_link: str | None = None,
                    description: str | None = None, source: str | None = None) -> str:
    """Writes a model directory that its library loads, with a model card.

    Args:
      variables: `{"params": ...}` (plus `"batch_stats"` for ResNets).
      name: the model or preset name, or its config dict (this fixes the activation).
      out_dir: the directory to write (created; files of the same names are replaced).
      format: "hf" (transformers `CLIPModel.from_pretrained` + `CLIPProcessor.from_pretrained`),
        "open_clip" (`open_clip.create_model_and_transforms("local-dir:...")`) or "orbax" (ours).
      training, eval_results, license, license_link, description: model-card fields (see
        `weights.model_card.write_model_card`); eval_results may be the path of eval/results.json.
      source: where the weights came from, for the record.

    Returns:
      out_dir.
    """
    if format not in FORMATS:
        raise WeightsError(f"format {format!r}: choose one of {', '.join(FORMATS)}")
    info = ModelInfo.from_model(name, variables=variables, source=source)
    if format == "orbax":
        save_orbax(variables, out_dir, info)
        return out_dir
    writer = hf.write_hf_dir if format == "hf" else hub.write_hub_dir
    writer(variables, info, out_dir)
    from remoteclip_jax.weights.model_card import write_model_card
    write_model_card(out_dir, model=info.name or info.config, quick_gelu=info.quick_gelu,
                     training=training, eval_results=eval_results, license=license,
                     license_link=license_link, format=format, description=description,
                     source=source)
    return out_dir
