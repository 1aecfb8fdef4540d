"""Test-wide setup: 8 simulated CPU devices, exact float32 matmuls, parsed absl flags."""
import os
import pathlib

# Must happen before jax initialises its backend: the device count is fixed then.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Commands the tests start keep no persistent compilation cache (tests/test_compilation_cache.py
# switches it on where it is the subject).
os.environ["REMOTECLIP_JAX_CACHE_DIR"] = ""

import jax  # noqa: E402
import pytest  # noqa: E402
from absl import flags  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
# grain reads absl flags even outside absl.app.run.
flags.FLAGS.mark_as_parsed()

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """Root of ../shared/data; skips the test when the real samples are absent."""
    root = pathlib.Path(os.environ.get("REMOTECLIP_SHARED_DATA", SHARED_DATA))
    if not root.is_dir():
        pytest.skip(f"real remote-sensing samples not found at {root}")
    return root
