"""Device mesh, batch and parameter shardings: the training mesh, which evaluation also runs on.

The mesh has two axes: "data" (pure data parallelism) and "fsdp" (data parallelism that also
shards parameters and optimizer state, ZeRO-3 style). The batch is split over both axes, so every
device sees different pairs; parameters are replicated unless `mesh.fsdp > 1`.

Axes are `AxisType.Auto` (jax's default `make_mesh` axes are Explicit, under which a product of
two batch-sharded operands is refused as illegally sharded): the models are written without sharding annotations and
rely on the compiler's propagation; the contrastive loss places its collectives itself in
`jax.shard_map`. Tests and training use the same mesh type.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from remoteclip_jax.errors import ConfigError

AXES = ("data", "fsdp")
# The batch dimension is split over every mesh axis.
BATCH_AXES = ("data", "fsdp")
BATCH_SPEC = P(BATCH_AXES)
# Below this many elements a parameter stays replicated under FSDP: gathering tiny arrays costs
# more latency than the memory it saves (big_vision and MaxText use similar cut-offs).
FSDP_MIN_SIZE = 2 ** 16


def make_mesh(mesh_config: Any, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds the ("data", "fsdp") training mesh.

    Args:
        mesh_config: has `data` and `fsdp` (ints); `data = -1` takes all devices not used by fsdp.
        devices: devices to use (default: all of `jax.devices()`, every process).

    Returns:
        A `jax.sharding.Mesh` with Auto axes ("data", "fsdp").

    Raises:
        ConfigError: when data × fsdp does not equal the device count.
    """
    devices = list(devices if devices is not None else jax.devices())
    n = len(devices)
    fsdp = int(mesh_config.fsdp)
    data = int(mesh_config.data)
    if fsdp < 1 or n % fsdp:
        raise ConfigError(
            f"config.mesh.fsdp={fsdp} must be >= 1 and divide the {n} devices; set "
            f"config.mesh.fsdp to a divisor of {n}")
    if data == -1:
        data = n // fsdp
    if data * fsdp != n:
        raise ConfigError(
            f"config.mesh.data={data} x config.mesh.fsdp={fsdp} = {data * fsdp} but there are {n} "
            f"devices; set config.mesh.data=-1 to use them all")
    return jax.make_mesh((data, fsdp), AXES, axis_types=(AxisType.Auto, AxisType.Auto),
                         devices=devices)


def num_batch_shards(mesh: Mesh) -> int:
    """How many ways the global batch is split (= devices in the mesh)."""
    return int(np.prod([mesh.shape[a] for a in BATCH_AXES]))


def param_spec(shape: Sequence[int], fsdp: int, min_size: int = FSDP_MIN_SIZE) -> P:
    """FSDP partition spec of one parameter: shard its largest dim divisible by `fsdp`.

    Small parameters (biases, norms, scalars) and parameters without a divisible dimension stay
    replicated.
    """
    if fsdp <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    order = sorted(range(len(shape)), key=lambda i: (-shape[i], i))
    for dim in order:
        if shape[dim] % fsdp == 0:
            spec = [None] * len(shape)
            spec[dim] = "fsdp"
            return P(*spec)
    return P()


def tree_shardings(abstract_tree: Any, mesh: Mesh, min_size: int = FSDP_MIN_SIZE) -> Any:
    """NamedShardings for a tree of arrays (or ShapeDtypeStructs): FSDP rule per leaf."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(lambda x: NamedSharding(mesh, param_spec(x.shape, fsdp, min_size)),
                        abstract_tree)


def shard_batch(local_batch: Any, mesh: Mesh) -> Any:
    """Global batch-sharded arrays from this process's slice of the batch.

    Every process passes its own rows (numpy arrays, leading dim = this process's share of the
    global batch, in process order); the result is one global `jax.Array` per leaf, split over
    ("data", "fsdp").

    Raises:
        ConfigError: when a leaf's leading dim is not divisible by this process's device count.
    """
    sharding = NamedSharding(mesh, BATCH_SPEC)
    local_devices = len(mesh.local_devices)

    def put(path, x):
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[0] % local_devices:
            name = jax.tree_util.keystr(path)
            raise ConfigError(
                f"batch{name} has leading dim {x.shape[:1]} but this process feeds {local_devices} "
                f"devices; make the per-process batch a multiple of {local_devices}")
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree_util.tree_map_with_path(put, local_batch)
