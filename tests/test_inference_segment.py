"""segment: every patch label equals the argmax over classes of patch tokens computed directly with
model.apply; a scene's class map sits on the scene's grid (cell = tile / patch grid) and each cell
holds the label of its tile's patch; at_image_size resamples as open_clip's resize_pos_embed."""
import json
import subprocess

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from remoteclip_jax.errors import ConfigError
from remoteclip_jax.inference.segment import segment, segment_scene
from remoteclip_jax.models.clip import at_image_size
from remoteclip_jax.transforms import image_transform
from tests.helpers.cli import ROOT, cli_env
from tests.helpers.inference import (cli_command, random_images, reference_text_features,
                                     save_model_dir, tiny_model)

CLASSES = ["water", "forest", "buildings"]
TEMPLATE = "a satellite photo of {}."


def _classifier(model, variables):
    return reference_text_features(model, variables, [TEMPLATE.format(c) for c in CLASSES])


def _reference_labels(model, variables, pixels, recipe):
    """Argmax over classes of unit patch tokens from one model.apply (no Encoder)."""
    tokens = np.asarray(model.apply(variables, jnp.asarray(pixels), tokens=True, dense=recipe,
                                    method="encode_image"), np.float64)
    tokens /= np.linalg.norm(tokens, axis=-1, keepdims=True)
    sims = tokens @ _classifier(model, variables).T
    return sims.argmax(-1), np.sort(sims, -1)


def _agree(labels, reference, sorted_sims, margin=1e-5):
    """Labels equal where the best class leads the second by more than float noise."""
    clear = sorted_sims[..., -1] - sorted_sims[..., -2] > margin
    assert clear.mean() > 0.8
    np.testing.assert_array_equal(np.asarray(labels)[clear], reference[clear])


@pytest.mark.parametrize("recipe", ["value", pytest.param("plain", marks=pytest.mark.slow)])
def test_image_patch_labels_equal_a_direct_computation(tmp_path, recipe):
    model, variables = tiny_model()
    paths = random_images(tmp_path / "imgs", 3, size=48)
    out = tmp_path / "out"
    result = segment(str(tmp_path / "imgs"), CLASSES, model=(model, variables), templates=TEMPLATE,
                     dense=recipe, out_dir=str(out), progress=False)
    transform = image_transform(model.image_size, train=False)
    pixels = np.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    reference, sims = _reference_labels(model, variables, pixels, recipe)
    grid = model.image_size // model.config["vision_cfg"]["patch_size"]
    assert result["grid"] == [grid, grid] and [r["path"] for r in result["images"]] == paths
    _agree(np.stack([r["labels"] for r in result["images"]]), reference, sims)
    written = json.loads((out / "segments.json").read_text())
    assert written["classes"] == CLASSES and len(written["images"]) == 3
    assert sorted(p.name for p in (out / "png").iterdir()) == ["img_000.png", "img_001.png",
                                                                "img_002.png"]


def test_scene_class_map_cells_sit_on_the_scene_grid(tmp_path):
    from tests.helpers.geo import GSD, ORIGIN_X, ORIGIN_Y, write_rgb

    rasterio = pytest.importorskip("rasterio")
    model, variables = tiny_model()
    rng = np.random.default_rng(3)
    tile, height, width = 64, 150, 200                    # 3 x 4 tiles, the last ones partial
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    scene = write_rgb(tmp_path / "scene.tif", rgb)
    summary = segment_scene(scene, CLASSES, model=(model, variables), tile=tile, templates=TEMPLATE,
                            out_dir=str(tmp_path / "out"), progress=False)
    grid = model.image_size // model.config["vision_cfg"]["patch_size"]   # 4 patches a side
    cell = tile / grid
    with rasterio.open(tmp_path / "out" / "classmap.tif") as src:
        classmap, transform = src.read(1), src.transform
        assert json.loads(src.tags()["classes"]) == CLASSES
    assert classmap.shape == (3 * grid, 4 * grid) == tuple(summary["classmap_shape"])
    assert (transform.c, transform.f) == (ORIGIN_X, ORIGIN_Y)            # the scene's corner
    assert (transform.a, -transform.e) == (GSD * cell, GSD * cell)
    # Tile (1, 2) by hand: its pixels, resized as the model's preprocessing does.
    transform_px = image_transform(model.image_size, train=False)
    chip = rgb[tile:2 * tile, 2 * tile:3 * tile]
    reference, sims = _reference_labels(model, variables,
                                        transform_px(Image.fromarray(chip))[None], "value")
    _agree(classmap[grid:2 * grid, 2 * grid:3 * grid], reference[0], sims[0])
    # Cells mostly past the scene's edges (the last tiles run to 192 x 256 px) hold no label.
    share = [np.clip((size - np.arange(n) * cell) / cell, 0, 1)
             for size, n in ((height, classmap.shape[0]), (width, classmap.shape[1]))]
    np.testing.assert_array_equal(classmap == 255, np.outer(*share) < 0.5)
    assert (tmp_path / "out" / "classmap.png").stat().st_size > 0


def test_scene_read_in_chunks_gives_the_whole_scene_map(tmp_path, monkeypatch):
    from remoteclip_jax.inference import segment as segment_module
    from tests.helpers.geo import write_rgb

    rasterio = pytest.importorskip("rasterio")
    model, variables = tiny_model()
    rgb = np.random.default_rng(5).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    scene = write_rgb(tmp_path / "scene.tif", rgb)                 # 2 x 3 tiles of 64 px
    maps = []
    for chunk in (1000, 1):                                         # one chunk; a chunk per batch
        monkeypatch.setattr(segment_module, "SCENE_CHUNK_TILES", chunk)
        out = tmp_path / f"out{chunk}"
        segment_scene(scene, CLASSES, model=(model, variables), tile=64, templates=TEMPLATE,
                      out_dir=str(out), batch_size=2, progress=False)
        with rasterio.open(out / "classmap.tif") as src:
            maps.append(src.read(1))
    np.testing.assert_array_equal(maps[0], maps[1])


def test_at_image_size_resamples_the_position_embedding_as_open_clip():
    from tests.helpers.openclip import build_openclip, open_clip, torch

    model, variables = tiny_model()
    bigger, resized = at_image_size(model, variables, 64)
    assert bigger.image_size == 64
    pos = np.asarray(variables["params"]["visual"]["positional_embedding"])
    state = {"visual.positional_embedding": torch.from_numpy(pos.copy())}
    other = {**model.config, "vision_cfg": {**model.config["vision_cfg"], "image_size": 64}}
    open_clip.model.resize_pos_embed(state, build_openclip(other))   # open_clip's loader's step
    np.testing.assert_allclose(np.asarray(resized["params"]["visual"]["positional_embedding"]),
                               state["visual.positional_embedding"].numpy(), atol=2e-6)
    with pytest.raises(ConfigError, match="multiple of the patch size"):
        at_image_size(model, variables, 60)


@pytest.mark.slow  # moved out of the default suite to keep it under CI's budget
def test_segment_command_writes_a_map_and_refuses_a_bad_recipe(tmp_path):
    model_dir = save_model_dir(tiny_model()[1], tmp_path / "tiny")
    random_images(tmp_path / "imgs", 1)
    run = subprocess.run(cli_command("segment", tmp_path / "imgs" / "img_000.png", "--model",
                                     model_dir, "--classes", ",".join(CLASSES), "--out",
                                     tmp_path / "out"),
                         capture_output=True, text=True, cwd=ROOT, env=cli_env())
    assert run.returncode == 0, run.stderr
    assert "segmented 1 image (4 x 4 patches each)" in run.stdout
    bad = subprocess.run(cli_command("segment", tmp_path / "imgs", "--model", model_dir,
                                     "--classes", "a,b", "--image-size", "30"),
                         capture_output=True, text=True, cwd=ROOT, env=cli_env())
    assert bad.returncode == 2 and "multiple of the patch size" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_resnet_image_tower_is_one_line(tmp_path):
    import jax

    import remoteclip_jax as rc

    model = rc.create_model(rc.models.TINY_RESNET)
    s = model.image_size
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)),
                            jnp.zeros((1, model.context_length), jnp.int32))
    variables = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), shapes)
    random_images(tmp_path / "imgs", 1)
    with pytest.raises(ConfigError, match="need a ViT image tower"):
        segment(str(tmp_path / "imgs"), CLASSES, model=(model, variables), templates=TEMPLATE,
                progress=False)
