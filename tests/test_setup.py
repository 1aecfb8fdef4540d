"""What every mode builds first: init_from reads any model directory or file, and refuses one
of another model in one line."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import remoteclip_jax as rc
from remoteclip_jax import config as schema
from remoteclip_jax.errors import UserError
from remoteclip_jax.recipes import SMOKE_VIT
from remoteclip_jax.train import setup


@pytest.fixture(scope="module")
def variables():
    model = rc.create_model(SMOKE_VIT)
    s = model.image_size
    return jax.device_get(jax.jit(model.init)(jax.random.PRNGKey(1), jnp.zeros((1, s, s, 3)),
                                              jnp.zeros((1, 77), jnp.int32)))


def _config(init_from, model=SMOKE_VIT):
    c = schema.get_base_config()
    schema.set_model(c, model)
    c.init_from = str(init_from)
    return c


@pytest.mark.parametrize("fmt", ["orbax", "open_clip", "hf"])
def test_init_from_reads_every_model_directory_layout(variables, tmp_path, fmt):
    out = tmp_path / fmt
    rc.save_pretrained(variables, SMOKE_VIT, str(out), format=fmt)
    loaded = setup.load_init_variables(_config(out))
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_init_from_a_directory_of_another_model_is_refused_in_one_line(variables, tmp_path):
    rc.save_pretrained(variables, SMOKE_VIT, str(tmp_path / "m"), format="orbax")
    gelu = {**SMOKE_VIT, "quick_gelu": False}
    with pytest.raises(UserError) as e:
        setup.load_init_variables(_config(tmp_path / "m", gelu))
    assert "\n" not in str(e.value) and str(tmp_path / "m") in str(e.value)
