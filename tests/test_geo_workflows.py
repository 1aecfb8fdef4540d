"""Scene commands end to end on real imagery: predictions equal the model on hand-cut chips,
outputs are georeferenced exactly, nodata tiles are skipped, tile-embedding runs resume."""
import json

import numpy as np
import pytest

from tests.helpers import geo as gs
from remoteclip_jax.errors import UserError
from remoteclip_jax.data.store import EmbeddingStore
from remoteclip_jax.geo import classify_scene, embed_scene, query_scene
from remoteclip_jax.inference.topk import top_k

rasterio = gs.rasterio
CLASSES = ["airport", "beach", "forest", "farmland", "harbor with ships"]
TILE, STRIDE = 224, 160


@pytest.fixture(scope="module")
def dota(shared_data):
    return gs.dota_image(shared_data)  # (1023, 1147, 3) real DOTA scene


@pytest.fixture(scope="module")
def class_embeddings():
    return gs.encode_texts([f"a satellite photo of {c}." for c in CLASSES])


def hand_windows(height, width):
    """Tile starts computed here independently: every STRIDE, the last flush with the edge."""
    def starts(n):
        s = list(range(0, n - TILE + 1, STRIDE))
        return s if s[-1] == n - TILE else s + [n - TILE]
    return [(r, c) for r in starts(height) for c in starts(width)]


def hand_probabilities(chip, class_embeddings):
    sims = gs.reference_embedding(chip) @ class_embeddings.astype(np.float64).T
    e = np.exp(100 * (sims - sims.max()))
    return sims, e / e.sum()


def check_classification(out_dir, image, class_embeddings, expect_tiles):
    with open(out_dir / "tiles.geojson") as f:
        collection = json.load(f)
    assert collection["type"] == "FeatureCollection"
    assert collection["crs"] == {"type": "name", "properties": {"name": "EPSG:32633"}}
    features = collection["features"]
    assert len(features) == len(expect_tiles)
    for feature, (r, c) in zip(features, expect_tiles):
        p = feature["properties"]
        assert p["window"] == {"row_off": r, "col_off": c, "height": TILE, "width": TILE}
        x0, y0 = gs.world(c, r)
        x1, y1 = gs.world(c + TILE, r + TILE)
        assert feature["geometry"]["coordinates"] == [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]
        sims, probs = hand_probabilities(image[r:r + TILE, c:c + TILE], class_embeddings)
        scores = {t["label"]: t["score"] for t in p["top_k"]}
        for label, score in scores.items():
            assert score == pytest.approx(probs[CLASSES.index(label)], abs=2e-4)
        assert p["similarity"] == pytest.approx(sims[CLASSES.index(p["label"])], abs=1e-5)
        top2 = np.sort(probs)[-2:]
        if top2[1] - top2[0] > 1e-3:  # labels only where the scores are not nearly tied
            assert p["label"] == CLASSES[int(np.argmax(probs))]
    return features


def test_classify_uint8_scene_matches_model_on_hand_cut_chips(tmp_path, dota, class_embeddings):
    path = gs.write_rgb(tmp_path / "dota.tif", dota, tiled=True, blockxsize=256, blockysize=256)
    summary = classify_scene(path, gs.encode_chips, class_embeddings, CLASSES, tmp_path / "out",
                             tile=TILE, stride=STRIDE, batch_size=16, top_k=3, wgs84=True,
                             progress=False)
    tiles = hand_windows(*dota.shape[:2])
    assert summary["tiles_kept"] == len(tiles) == 42 and summary["tiles_skipped_nodata"] == 0
    features = check_classification(tmp_path / "out", dota, class_embeddings, tiles)

    with rasterio.open(tmp_path / "out" / "classmap.tif") as cm:
        assert cm.crs.to_epsg() == 32633
        # One pixel per 160 px stride = 80 m, centred on its tile: the first cell starts
        # (224 - 160) / 2 = 32 px = 16 m inside the corner. Whole cells: the regular tiles only.
        assert tuple(cm.transform)[:6] == (80.0, 0.0, 500016.0, 0.0, -80.0, 4649760.0)
        assert cm.shape == (5, 6) and cm.nodata == 255
        classmap = cm.read(1)
        assert json.loads(cm.tags()["classes"]) == CLASSES and cm.tags()["class_1"] == "beach"
        assert cm.colormap(1)[0][:3] != cm.colormap(1)[1][:3]
    # The cell whose centre is scene pixel (80, 80) is tile (0, 0): no other tile centre is nearer.
    assert CLASSES[classmap[0, 0]] == features[0]["properties"]["label"]

    with open(tmp_path / "out" / "tiles_wgs84.geojson") as f:
        lon, lat = json.load(f)["features"][0]["geometry"]["coordinates"][0][0]
    # Easting 500000 is UTM 33N's central meridian (15 E); northing 4649776 m is about 42.0 N.
    assert lon == pytest.approx(15.0, abs=1e-6) and lat == pytest.approx(42.0, abs=0.05)


def test_classmap_cells_agree_with_the_tile_footprints_on_a_real_dota_scene(tmp_path, dota,
                                                                           class_embeddings):
    """Every tile centre (from tiles.geojson, in the CRS) lands in the class-map pixel that holds
    that tile's label; the class map holds whole cells only and lies inside the scene."""
    path = gs.write_rgb(tmp_path / "dota.tif", dota)
    classify_scene(path, gs.encode_chips, class_embeddings, CLASSES, tmp_path / "out", tile=TILE,
                   stride=STRIDE, progress=False)
    with open(tmp_path / "out" / "tiles.geojson") as f:
        features = json.load(f)["features"]
    with rasterio.open(tmp_path / "out" / "classmap.tif") as cm:
        classmap, to_pixel, bounds = cm.read(1), ~cm.transform, cm.bounds
    height, width = dota.shape[:2]
    placed, shifted = 0, 0
    for feature in features:
        xs, ys = zip(*feature["geometry"]["coordinates"][0][:4])
        col, row = to_pixel @ (sum(xs) / 4, sum(ys) / 4)
        window = feature["properties"]["window"]
        if window["row_off"] % STRIDE or window["col_off"] % STRIDE:  # an edge tile shifted inward
            assert height - TILE in (window["row_off"],) or width - TILE == window["col_off"]
            shifted += 1
            continue
        assert (row % 1, col % 1) == (0.5, 0.5)  # the tile's centre is its cell's centre
        assert CLASSES[classmap[int(row), int(col)]] == feature["properties"]["label"]
        placed += 1
    assert placed == classmap.size == 30 and placed + shifted == len(features) == 42
    x0, y0 = gs.world(0, 0)
    x1, y1 = gs.world(width, height)
    assert x0 <= bounds.left < bounds.right <= x1 and y1 <= bounds.bottom < bounds.top <= y0


def test_16bit_four_band_scene_classifies_like_its_8bit_rgb(tmp_path, dota, class_embeddings):
    path = gs.write_nir_rgb_16bit(tmp_path / "nirrgb.tif", dota)
    summary = classify_scene(path, gs.encode_chips, class_embeddings, CLASSES, tmp_path / "out",
                             tile=TILE, stride=STRIDE, bands="R,G,B", scale="0,10200", progress=False)
    assert summary["scene"]["bands"] == [2, 3, 4]
    assert summary["scene"]["scaling"] == {"mode": "fixed", "low": [0.0] * 3, "high": [10200.0] * 3}
    check_classification(tmp_path / "out", dota, class_embeddings, hand_windows(*dota.shape[:2]))
    with open(tmp_path / "out" / "tiles.geojson") as f:
        assert json.load(f)["properties"]["scene"]["scaling"]["mode"] == "fixed"


def test_nodata_tiles_are_skipped_and_counted(tmp_path, dota, class_embeddings):
    data = dota.transpose(2, 0, 1).astype(np.uint16) + 1
    data[:, 500:, :600] = 0  # bottom-left block without data
    path = gs.write_geotiff(tmp_path / "nodata.tif", data, nodata=0)
    summary = classify_scene(path, gs.encode_chips, class_embeddings, CLASSES, tmp_path / "out",
                             tile=TILE, stride=STRIDE, scale="1,256", progress=False)
    tiles = hand_windows(*dota.shape[:2])

    def nodata_fraction(r, c):
        rows = max(0, min(r + TILE, 1023) - max(r, 500))
        cols = max(0, min(c + TILE, 600) - c)
        return rows * cols / TILE ** 2
    kept = [t for t in tiles if nodata_fraction(*t) <= 0.5]
    assert summary["tiles_skipped_nodata"] == len(tiles) - len(kept) > 0
    with open(tmp_path / "out" / "tiles.geojson") as f:
        features = json.load(f)["features"]
    assert [(p["properties"]["window"]["row_off"], p["properties"]["window"]["col_off"])
            for p in features] == kept
    fractions = [f["properties"]["nodata_fraction"] for f in features]
    assert fractions == pytest.approx([nodata_fraction(*t) for t in kept], abs=1e-6)
    with rasterio.open(tmp_path / "out" / "classmap.tif") as cm:
        assert (cm.read(1)[-1, 0]) == 255  # the bottom-left cell is a skipped tile
    # Scale 1..256 maps stored v + 1 back to v; nodata pixels of kept tiles are filled with 0.
    hand = dota.copy()
    hand[500:, :600] = 0
    fully_valid = [t for t in kept if nodata_fraction(*t) == 0][:3]
    partly_valid = [t for t in kept if 0 < nodata_fraction(*t)][:3]
    for (r, c) in fully_valid + partly_valid:
        feature = features[kept.index((r, c))]["properties"]
        sims, _ = hand_probabilities(hand[r:r + TILE, c:c + TILE], class_embeddings)
        assert feature["similarity"] == pytest.approx(sims[CLASSES.index(feature["label"])], abs=1e-5)
    assert partly_valid


def test_query_heatmap_is_the_tile_similarity_georeferenced(tmp_path, dota):
    path = gs.write_rgb(tmp_path / "dota.tif", dota)
    text = gs.encode_texts(["many ships in a harbor"])[0]
    summary = query_scene(path, gs.encode_chips, text, tmp_path / "q", query="many ships in a harbor",
                          tile=TILE, stride=TILE, progress=False)
    with rasterio.open(tmp_path / "q" / "heatmap.tif") as hm:
        heat = hm.read(1)
        assert hm.crs.to_epsg() == 32633 and hm.dtypes[0] == "float32"
        assert tuple(hm.transform)[:6] == (112.0, 0.0, 500000.0, 0.0, -112.0, 4649776.0)
    assert heat.shape == (4, 5)  # whole cells: the regular tiles, (1023 - 224) // 224 + 1, ...
    # No overlap: cell (1, 2) is the tile at rows 224.., cols 448..
    expected = gs.reference_embedding(dota[224:448, 448:672]) @ text.astype(np.float64)
    assert heat[1, 2] == pytest.approx(expected, abs=1e-5)
    best = summary["best_tiles"][0]
    r, c = best["window"]["row_off"], best["window"]["col_off"]
    assert best["similarity"] == pytest.approx(np.nanmax(heat), abs=1e-6)
    assert best["footprint"][0] == pytest.approx(gs.world(c, r))
    from PIL import Image
    with Image.open(tmp_path / "q" / "heatmap.png") as png:
        assert png.width >= 600 and png.mode in ("RGB", "RGBA")


class Interrupt(RuntimeError):
    pass


def test_embed_scene_resumes_after_interruption(tmp_path, dota):
    path = gs.write_rgb(tmp_path / "dota.tif", dota)
    calls = {"n": 0}

    def flaky(chips):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Interrupt("killed")
        return gs.encode_chips(chips)

    kw = dict(tile=TILE, stride=STRIDE, batch_size=8, shard_tiles=16, metadata_format="jsonl",
              progress=False)
    with pytest.raises(Interrupt):
        embed_scene(path, flaky, tmp_path / "store", **kw)
    # Shard 0 (tiles 0..15, two batches) finished before the third call died.
    assert (tmp_path / "store" / "img_emb" / "img_emb_0000.npy").exists()
    assert not (tmp_path / "store" / "img_emb" / "img_emb_0001.npy").exists()
    summary = embed_scene(path, flaky, tmp_path / "store", **kw)
    assert summary["resumed_tiles"] == 16 and summary["shards"] == 3
    store = EmbeddingStore(str(tmp_path / "store"))
    embeddings, rows = store.features(), store.metadata()
    assert store.crs == gs.CRS
    tiles = hand_windows(*dota.shape[:2])
    assert list(zip(rows["row_off"], rows["col_off"])) == tiles
    for k in (0, 17, 41):
        r, c = tiles[k]
        np.testing.assert_allclose(embeddings[k], gs.reference_embedding(dota[r:r + TILE, c:c + TILE]),
                                   atol=1e-5)
        x0, y0 = gs.world(c, r)
        assert (rows["minx"][k], rows["maxy"][k]) == (x0, y0)
        assert rows["footprint_wkt"][k].startswith(f"POLYGON (({x0!r} {y0!r}, ")
    with pytest.raises(UserError, match="other inputs or settings"):
        embed_scene(path, gs.encode_chips, tmp_path / "store", **{**kw, "stride": TILE})
    _, hits = top_k(embeddings[17][None], store.shards(), 3)
    assert rows["tile_id"][hits[0, 0]] == rows["tile_id"][17]


def test_tile_store_parquet_layout(tmp_path, dota):
    pytest.importorskip("pyarrow")
    path = gs.write_rgb(tmp_path / "dota.tif", dota[:448, :448].copy())
    embed_scene(path, gs.encode_chips, tmp_path / "store", tile=TILE, progress=False)
    assert (tmp_path / "store" / "metadata" / "metadata_0000.parquet").exists()
    store = EmbeddingStore(str(tmp_path / "store"))
    assert store.features().shape == (4, 32) and store.metadata()["tile_id"][3] == "dota.tif:1:1"
    assert isinstance(store.metadata()["row_off"][3], int)  # typed columns


def test_embed_scene_learns_the_width_of_skipped_shards_once(tmp_path):
    data = np.full((3, 64, 64), 7, np.uint8)
    data[:, :, :32] = 0                          # the left column of tiles has no data
    path = gs.write_geotiff(tmp_path / "half.tif", data, nodata=0)
    calls = []

    def encode(chips):
        calls.append(len(chips))
        return np.ones((len(chips), 5), np.float32)

    # One tile per shard, in row order: skipped, kept, skipped, kept.
    embed_scene(path, encode, tmp_path / "store", tile=32, shard_tiles=1, metadata_format="jsonl",
                progress=False)
    assert calls == [1, 1, 1]                    # a zero tile for shard 0, then the two kept tiles
    store = EmbeddingStore(str(tmp_path / "store"))
    assert store.features().shape == (2, 5)
