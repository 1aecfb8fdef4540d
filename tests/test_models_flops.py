"""The FLOP formula counts exactly the products and convolutions the towers' programs contain."""
import jax
import jax.numpy as jnp
import pytest

import remoteclip_jax as rc
from remoteclip_jax.models import TINY_RESNET, TINY_VIT, flops
from tests.helpers.hlo import products


def _program_flops(model, tower: str) -> int:
    """FLOPs of one pair's forward pass through `tower`, counted from the lowered program."""
    s = model.image_size
    images = jax.ShapeDtypeStruct((1, s, s, 3), jnp.float32)
    texts = jax.ShapeDtypeStruct((1, model.context_length), jnp.int32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), images, texts)
    method, x = ("encode_image", images) if tower == "image" else ("encode_text", texts)
    return sum(p.flops for p in products(lambda v, x: model.apply(v, x, method=method),
                                         variables, x, platform="cpu"))


@pytest.mark.parametrize("name", [TINY_VIT, TINY_RESNET, "ViT-B-32", "ViT-L-14", "RN50"],
                         ids=["tiny-vit", "tiny-resnet", "ViT-B-32", "ViT-L-14", "RN50"])
def test_forward_flops_equal_the_programs_products(name):
    model = rc.create_model(name)
    for tower in ("image", "text"):
        assert flops.forward_flops(name, tower) == _program_flops(model, tower), tower


def test_train_flops_per_pair_match_the_published_counts():
    """ViT-B-32 44.2 and ViT-L-14 526 GFLOP per pair: XLA's CPU cost analysis of the train step."""
    assert flops.train_flops_per_pair("ViT-B-32") / 1e9 == pytest.approx(44.2, rel=0.01)
    assert flops.train_flops_per_pair("ViT-L-14") / 1e9 == pytest.approx(526, rel=0.01)
