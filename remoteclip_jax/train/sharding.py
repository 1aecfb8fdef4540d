"""The training mesh and shardings live in `remoteclip_jax.sharding`; this name stays importable."""
from remoteclip_jax.sharding import *  # noqa: F401,F403
