"""`remoteclip-jax classify SCENE.tif --tile N`: per-tile labels in the scene's CRS."""
import json
import os
import subprocess

import numpy as np
import pytest

from tests.helpers import geo as gs
from tests.helpers import inference as ih
from tests.helpers.cli import ROOT, cli_env

pytest.importorskip("rasterio")


def test_classify_a_scene_writes_tiles_geojson_in_its_crs_equal_to_the_python_api(
        tmp_path, shared_data):
    from remoteclip_jax.inference.zero_shot import classify_scene

    model, variables = ih.tiny_model()
    model_dir = ih.save_model_dir(variables, tmp_path / "model")
    scene = gs.write_rgb(tmp_path / "scene.tif", gs.aid_mosaic(shared_data))   # 450 x 450
    out = subprocess.run(ih.cli_command("classify", scene, "--model", model_dir, "--classes",
                                        "forest,beach,airport", "--tile", "150",
                                        "--out", tmp_path / "cli"),
                         cwd=ROOT, env=cli_env(2), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    tiles = json.loads((tmp_path / "cli" / "tiles.geojson").read_text())
    assert tiles["type"] == "FeatureCollection"
    assert tiles["crs"]["properties"]["name"] == gs.CRS
    assert len(tiles["features"]) == 9
    first = tiles["features"][0]
    x0, y0 = gs.world(0, 0)
    x1, y1 = gs.world(150, 150)
    xs, ys = zip(*first["geometry"]["coordinates"][0])
    assert (min(xs), max(xs), min(ys), max(ys)) == (x0, x1, y1, y0)   # pixel -> world by hand
    api = classify_scene(scene, "forest,beach,airport", model=model_dir, out_dir=str(tmp_path / "api"),
                         tile=150)
    again = json.loads((tmp_path / "api" / "tiles.geojson").read_text())
    assert api["tiles_kept"] == 9
    for a, b in zip(tiles["features"], again["features"]):
        assert a["properties"]["label"] == b["properties"]["label"]
        np.testing.assert_allclose(a["properties"]["score"], b["properties"]["score"], atol=1e-5)


def test_an_unreadable_scene_is_one_line_and_exit_code_2(tmp_path):
    model, variables = ih.tiny_model()
    model_dir = ih.save_model_dir(variables, tmp_path / "model")
    (tmp_path / "broken.tif").write_bytes(b"II*\x00not a tiff")
    out = subprocess.run(ih.cli_command("classify", tmp_path / "broken.tif", "--model", model_dir,
                                        "--classes", "a,b", "--tile", "64", "--out", tmp_path),
                         cwd=ROOT, env=cli_env(2), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "broken.tif" in last


def test_embed_a_scene_then_search_answers_with_places_in_its_crs(tmp_path, capsys):
    """`embed SCENE.tif --tile N` then `search` over the store: the hits are the tiles an
    independent reference ranks first (chips cut by hand, one model.apply), written as a GeoJSON
    of their footprints in the scene's CRS."""
    from PIL import Image

    from remoteclip_jax import cli

    model, variables = ih.tiny_model()
    model_dir = ih.save_model_dir(variables, tmp_path / "model")
    rgb = np.random.default_rng(3).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    scene = gs.write_rgb(tmp_path / "scene.tif", rgb)
    store, hits = tmp_path / "store", tmp_path / "hits"
    assert cli.main(["embed", scene, "--tile", "100", "--model", model_dir, "--out", str(store)]) == 0
    assert "embedded 6 tiles" in capsys.readouterr().out
    assert cli.main(["search", str(store), "--model", model_dir, "--text", "an airport",
                     "--top-k", "3", "--out", str(hits), "--sheet", "png"]) == 0
    windows = [(r, c) for r in (0, 100) for c in (0, 100, 200)]
    chips = []
    for k, (r, c) in enumerate(windows):
        chips.append(tmp_path / f"chip{k}.png")
        Image.fromarray(rgb[r:r + 100, c:c + 100]).save(chips[-1])
    scores = ih.reference_image_features(model, variables, chips) @ \
        ih.reference_text_features(model, variables, ["an airport"])[0]
    expected = np.argsort(-scores, kind="stable")[:3]
    places = json.loads((hits / "hits.geojson").read_text())
    assert places["crs"]["properties"]["name"] == gs.CRS
    assert [f["properties"]["rank"] for f in places["features"]] == [1, 2, 3]
    for feature, k in zip(places["features"], expected):
        r, c = windows[k]
        assert (feature["properties"]["row_off"], feature["properties"]["col_off"]) == (r, c)
        assert feature["properties"]["score"] == pytest.approx(scores[k], abs=1e-5)
        xs, ys = zip(*feature["geometry"]["coordinates"][0])
        (x0, y0), (x1, y1) = gs.world(c, r), gs.world(c + 100, r + 100)
        assert (min(xs), max(xs), min(ys), max(ys)) == (x0, x1, y1, y0)
    assert (hits / "contact_sheet.png").is_file()
    # The scene moved away: the places are still answered, the sheet is grey with a warning.
    os.rename(scene, tmp_path / "moved.tif")
    (hits / "hits.geojson").unlink()
    assert cli.main(["search", str(store), "--model", model_dir, "--text", "an airport",
                     "--top-k", "3", "--out", str(hits), "--sheet", "png"]) == 0
    assert "warning: cannot read the hit tiles' pixels" in capsys.readouterr().err
    assert json.loads((hits / "hits.geojson").read_text())["features"] == places["features"]


def test_query_command_maps_a_text_over_a_scene_as_the_reference_scores_its_tiles(tmp_path, capsys):
    """`remoteclip-jax query SCENE.tif --text ... --tile N --out DIR`: heatmap.tif in the
    scene's CRS, one pixel per tile, each the cosine similarity an independent reference gives
    that tile's pixels; heatmap.png beside it; the best tiles printed."""
    import rasterio
    from PIL import Image

    from remoteclip_jax import cli

    model, variables = ih.tiny_model()
    model_dir = ih.save_model_dir(variables, tmp_path / "model")
    rgb = np.random.default_rng(4).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    scene = gs.write_rgb(tmp_path / "scene.tif", rgb)
    assert cli.main(["query", scene, "--text", "a harbour with ships", "--tile", "50",
                     "--model", model_dir, "--out", str(tmp_path / "q"), "--top-k", "2"]) == 0
    printed = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    chips = []
    for r in (0, 50):
        for c in (0, 50, 100):
            chips.append(tmp_path / f"chip_{r}_{c}.png")
            Image.fromarray(rgb[r:r + 50, c:c + 50]).save(chips[-1])
    expected = (ih.reference_image_features(model, variables, chips) @
                ih.reference_text_features(model, variables, ["a harbour with ships"])[0])
    with rasterio.open(tmp_path / "q" / "heatmap.tif") as heat:
        assert heat.crs.to_string() == gs.CRS and heat.shape == (2, 3)
        assert tuple(heat.transform)[:6] == (50 * gs.GSD, 0.0, gs.world(0, 0)[0],
                                             0.0, -50 * gs.GSD, gs.world(0, 0)[1])
        np.testing.assert_allclose(heat.read(1).ravel(), expected, atol=1e-5)
    assert (tmp_path / "q" / "heatmap.png").stat().st_size > 0
    best = np.argsort(-expected)[:2]
    assert [p[2] for p in printed] == [f"scene.tif:{k // 3}:{k % 3}" for k in best]
