"""Former home of the zero-shot class names; the one table now lives in
`remoteclip_jax.data.classnames`. Kept only so that callers not yet moved keep importing."""
from remoteclip_jax.data.classnames import readable_classnames, resolve_classnames  # noqa: F401
