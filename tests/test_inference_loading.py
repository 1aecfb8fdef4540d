"""load_model reads a model directory back exactly; other paths are one-line UserErrors."""
import jax
import numpy as np
import pytest

from remoteclip_jax.errors import UserError
from remoteclip_jax.inference.loading import load_model, make_encoder
from tests.inference_helpers import save_model_dir, tiny_model


def test_model_directory_round_trips_variables_and_config(tmp_path):
    model, variables = tiny_model()
    loaded_model, loaded = load_model(save_model_dir(variables, tmp_path / "m"))
    assert loaded_model.config == model.config
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_paths_that_are_not_model_directories_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "absent")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match="no model.json"):
        load_model(tmp_path / "plain")
    with pytest.raises(UserError, match="no model given"):
        make_encoder(None)
