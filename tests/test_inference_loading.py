"""load_model reads model directories back exactly; other paths are one-line UserErrors; the
weights fingerprint tells weights apart."""
import jax
import numpy as np
import pytest

import remoteclip_jax as rc
from remoteclip_jax.errors import UserError
from remoteclip_jax.inference.loading import load_model, make_encoder
from tests.helpers.inference import save_model_dir, tiny_model


def _assert_same(a_tree, b_tree):
    a, b = jax.tree_util.tree_flatten_with_path(a_tree)[0], jax.tree_util.tree_flatten_with_path(b_tree)[0]
    assert [jax.tree_util.keystr(p) for p, _ in a] == [jax.tree_util.keystr(p) for p, _ in b]
    for (_, x), (_, y) in zip(a, b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=0)


def test_orbax_model_directory_round_trips_variables_and_config(tmp_path):
    model, variables = tiny_model()
    loaded_model, loaded = load_model(save_model_dir(variables, tmp_path / "m"))
    assert loaded_model.config == model.config
    _assert_same(variables, loaded)


def test_open_clip_hub_directory_loads_the_same_weights(tmp_path):
    model, variables = tiny_model()
    rc.save_pretrained(variables, dict(rc.models.TINY_VIT), str(tmp_path / "hub"), format="open_clip")
    loaded_model, loaded = load_model(tmp_path / "hub")
    assert loaded_model.config == model.config
    _assert_same(variables, loaded)


def test_paths_that_are_not_model_directories_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "absent")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match="unknown model directory layout") as e:
        load_model(tmp_path / "plain")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="no model given"):
        make_encoder(None)
