"""The weights fingerprint: stable for equal weights, wherever they live; different otherwise."""
import jax
import numpy as np

from remoteclip_jax.train import sharding
from remoteclip_jax.weights.fingerprint import weights_fingerprint
from tests.helpers.inference import tiny_model


def test_fingerprint_is_stable_and_tells_weights_apart():
    _, a = tiny_model(0)
    _, b = tiny_model(1)
    assert weights_fingerprint(a) == weights_fingerprint(jax.tree.map(np.array, a))
    assert weights_fingerprint(a) != weights_fingerprint(b)


def test_fingerprint_of_mesh_replicated_weights_equals_the_host_copy():
    import ml_collections
    from jax.sharding import NamedSharding, PartitionSpec as P

    _, a = tiny_model(0)
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 1}))
    on_mesh = jax.device_put(a, NamedSharding(mesh, P()))
    assert weights_fingerprint(on_mesh) == weights_fingerprint(a)
