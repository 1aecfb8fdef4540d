"""ViT extensions against open_clip: patch dropout, dense patch tokens, other input sizes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import remoteclip_jax as rc
from remoteclip_jax.errors import ConfigError
from remoteclip_jax.models import TINY_RESNET, TINY_VIT
from remoteclip_jax.models.vit import drop_patches, resize_pos_embed
from tests.helpers.openclip import (build_openclip, max_relative_error, open_clip,
                                      reference_inputs, torch)


@pytest.mark.parametrize("patches,rate", [(16, 0.5), (49, 0.5), (49, 0.3), (256, 0.75), (4, 0.9)])
def test_patch_dropout_keeps_open_clips_token_count_and_the_class_token(patches, rate):
    x = jax.random.normal(jax.random.PRNGKey(0), (3, patches + 1, 8))
    got = drop_patches(x, rate, jax.random.PRNGKey(1))
    reference = open_clip.transformer.PatchDropout(rate).train()
    want = reference(torch.from_numpy(np.array(x)))
    assert got.shape == tuple(want.shape)
    np.testing.assert_array_equal(got[:, 0], x[:, 0])
    for row, kept in zip(np.asarray(x), np.asarray(got)):
        # Kept tokens are distinct patch tokens of that image.
        hits = [int(np.flatnonzero((row[1:] == token).all(-1))[0]) for token in kept[1:]]
        assert len(set(hits)) == len(hits)


def test_patch_dropout_acts_in_training_only():
    reference = build_openclip(TINY_VIT)
    variables = rc.load_openclip(reference.state_dict(), TINY_VIT)
    _, _, images, _ = reference_inputs(32)
    plain = rc.create_model(TINY_VIT).apply(variables, images, method="encode_image")
    model = rc.create_model(TINY_VIT, patch_dropout=0.5)
    np.testing.assert_array_equal(model.apply(variables, images, method="encode_image"), plain)

    def train(seed):
        return model.apply(variables, images, True, method="encode_image",
                           rngs={"dropout": jax.random.PRNGKey(seed)})

    np.testing.assert_array_equal(train(0), train(0))
    assert not np.allclose(train(0), plain) and not np.allclose(train(0), train(1))
    with pytest.raises(ConfigError, match="ViT"):
        rc.create_model(TINY_RESNET, patch_dropout=0.5)


def _openclip_tokens(reference, images_t, value_path_last: bool):
    """Projected patch tokens from open_clip's modules: its own tokens, or MaskCLIP's value path
    through the last block (out_proj of each token's value, residual and MLP kept)."""
    visual = reference.visual
    with torch.no_grad():
        x = visual._embeds(images_t)
        blocks = visual.transformer.resblocks
        for block in blocks[:-1] if value_path_last else blocks:
            x = block(x)
        if value_path_last:
            last = blocks[-1]
            attn = last.attn
            v = torch.nn.functional.linear(last.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
            v = v.chunk(3, dim=-1)[2]
            x = x + attn.out_proj(v)
            x = x + last.mlp(last.ln_2(x))
        tokens = visual.ln_post(x)[:, 1:] @ visual.proj
    grid = int(round(np.sqrt(tokens.shape[1])))
    return tokens.numpy().reshape(tokens.shape[0], grid, grid, -1)


@pytest.mark.parametrize("dense", ["plain", "value"])
def test_dense_patch_tokens_match_open_clips_modules(dense):
    reference = build_openclip(TINY_VIT)
    variables = rc.load_openclip(reference.state_dict(), TINY_VIT)
    images_t, _, images, _ = reference_inputs(32)
    got = rc.create_model(TINY_VIT).apply(variables, images, tokens=True, dense=dense,
                                          method="encode_image")
    want = _openclip_tokens(reference, images_t, value_path_last=dense == "value")
    assert got.shape == want.shape == (2, 4, 4, TINY_VIT["embed_dim"])
    assert max_relative_error(got, want) < 1e-5


def test_plain_tokens_equal_open_clips_output_tokens():
    reference = build_openclip(TINY_VIT)
    variables = rc.load_openclip(reference.state_dict(), TINY_VIT)
    images_t, _, images, _ = reference_inputs(32)
    reference.visual.output_tokens = True
    with torch.no_grad():
        _, tokens = reference.visual(images_t)
        want = (tokens @ reference.visual.proj).numpy().reshape(2, 4, 4, -1)
    got = rc.create_model(TINY_VIT).apply(variables, images, tokens=True, method="encode_image")
    assert max_relative_error(got, want) < 1e-5


@pytest.mark.parametrize("image_size", [48, pytest.param(24, marks=pytest.mark.slow),
                                        pytest.param(64, marks=pytest.mark.slow)])
def test_checkpoint_for_another_input_size_gets_open_clips_resampled_position_embedding(image_size):
    reference = build_openclip(TINY_VIT)  # 32 px, 8-px patches: a 4 x 4 grid
    other = {**TINY_VIT, "vision_cfg": {**TINY_VIT["vision_cfg"], "image_size": image_size}}
    variables = rc.load_openclip(reference.state_dict(), other)
    state_dict = reference.state_dict()
    resized = build_openclip(other)
    open_clip.model.resize_pos_embed(state_dict, resized)  # in place, open_clip's loader's step
    want = state_dict["visual.positional_embedding"].numpy()
    got = variables["params"]["visual"]["positional_embedding"]
    assert got.shape == want.shape == ((image_size // 8) ** 2 + 1, 64)
    np.testing.assert_allclose(got, want, atol=2e-6)
    # And the whole tower then computes what open_clip's does at that size.
    resized.load_state_dict(state_dict)
    images_t, _, images, _ = reference_inputs(image_size)
    with torch.no_grad():
        want_features = resized.encode_image(images_t).numpy()
    got_features = rc.create_model(other).apply(variables, images, method="encode_image")
    assert max_relative_error(got_features, want_features) < 1e-5


def test_resize_pos_embed_keeps_the_class_row_and_refuses_non_grids():
    pos = np.random.default_rng(0).normal(size=(17, 8)).astype(np.float32)
    np.testing.assert_array_equal(resize_pos_embed(pos, 6)[0], pos[0])
    assert resize_pos_embed(pos, 4) is pos
    with pytest.raises(ValueError, match="square"):
        resize_pos_embed(pos[:15], 3)
