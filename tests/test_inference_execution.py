"""Execution plans: per-backend settings; pre-casting parameters leaves bf16 outputs unchanged."""
import jax
import jax.numpy as jnp
import numpy as np

from remoteclip_jax.inference.execution import (CPU_FLOAT32_OPTIONS, ExecutionPlan,
                                                execution_plan, precast_params)
from remoteclip_jax.inference.encoder import Encoder
from tests.helpers.inference import random_images, tiny_model


def test_cpu_float32_uses_eigen_dots_and_bfloat16_precasts():
    f32 = execution_plan("float32", backend="cpu", num_devices=1)
    bf16 = execution_plan(jnp.bfloat16, backend="cpu", num_devices=1)
    assert f32.compiler_options == CPU_FLOAT32_OPTIONS and not f32.precast
    assert bf16.compiler_options is None and bf16.precast  # bf16 dots need YNNPACK: no override
    gpu = execution_plan("bfloat16", backend="gpu", num_devices=4)
    assert gpu.compiler_options is None and gpu.batch_size % 4 == 0


def test_precast_casts_projection_weights_and_keeps_layernorm_float32():
    _, variables = tiny_model()
    cast = precast_params(variables, jnp.bfloat16)
    params = cast["params"]
    assert params["visual"]["conv1"]["kernel"].dtype == jnp.bfloat16
    assert params["token_embedding"]["embedding"].dtype == jnp.bfloat16
    assert params["text_projection"].dtype == jnp.bfloat16
    assert params["ln_final"]["scale"].dtype == jnp.float32
    assert params["ln_final"]["bias"].dtype == jnp.float32
    assert params["logit_scale"].dtype == jnp.float32


def test_precast_bfloat16_features_equal_uncast_bfloat16(tmp_path):
    model, variables = tiny_model()
    paths = random_images(tmp_path, 8)
    options = dict(batch_size=8, compiler_options=None)
    cast = Encoder(model, variables, dtype="bfloat16", plan=ExecutionPlan(precast=True, **options))
    plain = Encoder(model, variables, dtype="bfloat16", plan=ExecutionPlan(precast=False, **options))
    # The model casts these parameters itself; arriving cast must not change a single value
    # beyond float32 summation-order noise.
    np.testing.assert_allclose(cast.images(paths).features, plain.images(paths).features, atol=1e-6)
    texts = ["a harbour with ships", "a dense forest"]
    np.testing.assert_allclose(cast.texts(texts), plain.texts(texts), atol=1e-6)


def test_eigen_option_changes_float32_features_only_by_rounding(tmp_path):
    model, variables = tiny_model()
    paths = random_images(tmp_path, 8)
    eigen = Encoder(model, variables, plan=ExecutionPlan(8, dict(CPU_FLOAT32_OPTIONS), False))
    default = Encoder(model, variables, plan=ExecutionPlan(8, None, False))
    np.testing.assert_allclose(eigen.images(paths).features, default.images(paths).features,
                               atol=2e-6)
    assert jax.default_backend() == "cpu"
