"""Source kind tfds: a TFDS dataset built here with TFDS's own builder (array_record, no
download) reads like the image folder it was built from, for training and zero-shot."""
import pickle
import sys

import numpy as np
import pytest
from PIL import Image

from remoteclip_jax.data import classnames, pipeline, sources
from remoteclip_jax.errors import ConfigError, DataError

# EuroSAT folder names, in an order that is not sorted: labels must go by name, not index.
CLASSES = ["River", "Forest", "Highway"]
PER_CLASS = 5


def _image_folder(root):
    """root/<class>/<class>_<i>.png, random RGB images (distinct per file)."""
    rng = np.random.default_rng(0)
    files = []
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(PER_CLASS):
            path = root / c / f"{c}_{i}.png"
            Image.fromarray(rng.integers(0, 256, (24, 28, 3), dtype=np.uint8)).save(path)
            files.append((c, path))
    return files


def _build_tfds(tfds, data_dir, files, with_captions=False):
    """A TFDS dataset "tiny_scenes" of `files` in data_dir, through a GeneratorBasedBuilder:
    split train holds the first 4 images per class, split test the rest."""

    class TinyScenes(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = {"image": tfds.features.Image(shape=(None, None, 3)),
                        "label": tfds.features.ClassLabel(names=CLASSES),
                        "filename": tfds.features.Text()}
            if with_captions:
                features["caption"] = tfds.features.Text()
            return tfds.core.DatasetInfo(builder=self,
                                         features=tfds.features.FeaturesDict(features))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(lambda p: not p.stem.endswith("_4")),
                    "test": self._generate_examples(lambda p: p.stem.endswith("_4"))}

        def _generate_examples(self, keep):
            for label, path in files:
                if keep(path):
                    example = {"image": path, "label": label, "filename": path.name}
                    if with_captions:
                        example["caption"] = f"a photo of {label} {path.stem}"
                    yield path.name, example

    TinyScenes(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return {"kind": "tfds", "path": "tiny_scenes", "data_dir": str(data_dir)}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tfds = pytest.importorskip("tensorflow_datasets")
    root = tmp_path_factory.mktemp("tfds")
    files = _image_folder(root / "EuroSAT")
    spec = _build_tfds(tfds, root / "tfds_data", files)
    return tfds, root / "EuroSAT", files, spec


def test_items_are_the_folder_images_with_their_class_names(built):
    _, _, files, spec = built
    src = sources.build_source(spec)
    assert len(src) == len(files)                      # split "" = train + test
    by_name = {path.name: (label, path) for label, path in files}
    seen = set()
    for i in range(len(src)):
        item = src[i]
        label, path = by_name[item["image_id"]]
        assert item["label"] == label and item["captions"] == []
        assert item["image"] == path.read_bytes()      # the stored PNG, not re-encoded
        assert sources.item_metadata(src, i) == {k: v for k, v in item.items() if k != "image"}
        seen.add(item["image_id"])
    assert seen == set(by_name)
    assert src.classes == CLASSES
    test = sources.build_source({**spec, "split": "test"})
    assert sorted(test[i]["image_id"] for i in range(len(test))) == \
        sorted(p.name for _, p in files if p.stem.endswith("_4"))
    assert len(sources.build_source({**spec, "split": "train[:50%]"})) == 6
    # grain worker processes get the source pickled
    again = pickle.loads(pickle.dumps(src))
    assert again[3]["image"] == src[3]["image"] and again[3]["image_id"] == src[3]["image_id"]


def test_training_reads_tfds_captions(built, tmp_path):
    tfds, _, files, _ = built
    spec = {**_build_tfds(tfds, tmp_path, files, with_captions=True), "caption_key": "caption",
            "split": "train"}
    it = pipeline.make_train_iterator([spec], batch_size_per_process=4, image_size=32, seed=0,
                                      epochs=1, with_metadata=True)
    batches = list(it)
    it.close()
    src = sources.build_source(spec)
    assert sum(len(b["index"]) for b in batches) == 12 and it.stats.num_skipped == 0
    for b in batches:
        for i, caption in zip(b["index"], b["caption"]):
            item = src[int(i)]
            assert caption == f"a photo of {item['label']} {item['image_id'][:-4]}"


def test_zeroshot_on_tfds_equals_the_image_folder(built, tmp_path):
    import jax
    import jax.numpy as jnp

    import remoteclip_jax as rc
    from remoteclip_jax import config as schema
    from remoteclip_jax.evaluate import Evaluator
    from remoteclip_jax.train import sharding

    _, folder, _, spec = built
    model = rc.create_model(rc.models.TINY_VIT)
    s = model.image_size
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)),
                                    jnp.zeros((1, 77), jnp.int32))
    c = schema.get_base_config()
    c.eval.batch_size = 8
    c.eval.cache_features = False
    c.evals["eurosat"] = schema.evaluation("zeroshot", kind="image_folder", path=str(folder))
    c.evals["from_tfds"] = schema.evaluation("zeroshot", **spec, dataset="eurosat")
    ev = Evaluator(model, c, sharding.make_mesh(c.mesh), tmp_path)
    out = ev(variables, step=0)

    # The same images give the same features, matched by file name.
    a, b = (ev._dataset(ev.entries[n]) for n in ("eurosat", "from_tfds"))
    fa, fb = ev.image_features(variables, a), ev.image_features(variables, b)
    order = {k.rsplit("/", 1)[-1]: i for i, k in enumerate(a[1].keys)}
    np.testing.assert_allclose(fb, fa[[order[k] for k in b[1].keys]], rtol=1e-5, atol=1e-6)

    # The same metrics, classes, prompt names (the paper's EuroSAT table) and test images.
    import json
    details = json.loads((tmp_path / "eval" / "details.json").read_text())["datasets"]
    ref, got = details["eurosat"], details["from_tfds"]
    for key in ("classnames", "classname_sources", "templates", "num_images", "confusion"):
        assert got[key] == ref[key], key
    assert ref["num_images"] == 3                     # the paper's split: 1 of 5 per class
    assert set(got["classname_sources"]) == {"reference"}
    assert got["classnames"] == ["forest", "highway or road", "river"]
    assert got["per_class"] == pytest.approx(ref["per_class"])
    for metric in ("top1", "top5"):
        assert out[f"eval/from_tfds/{metric}"] == pytest.approx(out[f"eval/eurosat/{metric}"])


@pytest.mark.parametrize("name,key", [("eurosat/rgb", "eurosat"), ("resisc45", "resisc45"),
                                      ("uc_merced", "uc_merced")])
def test_tfds_class_names_are_in_the_paper_tables(name, key, tmp_path):
    # TFDS's own ClassLabel names of its remote-sensing datasets (from its code: nothing is
    # downloaded) all find their entry in the paper's tables, by the TFDS name too.
    tfds = pytest.importorskip("tensorflow_datasets")
    names = tfds.builder(name, data_dir=str(tmp_path)).info.features["label"].names
    for dataset in (key, name):
        _, found = classnames.resolve_classnames(names, dataset)
        assert set(found) == {"reference"}, (dataset, names)


def test_bad_tfds_specs_are_one_line_errors(built, tmp_path):
    _, _, _, spec = built
    cases = [({**spec, "path": "no_such_dataset_xyz"}, "no_such_dataset_xyz"),
             ({**spec, "split": "validation"}, "validation"),
             ({**spec, "image_key": "pixels"}, "image_key"),
             ({**spec, "caption_key": "text"}, "caption_key"),
             ({"kind": "tfds", "path": "eurosat/rgb", "data_dir": str(tmp_path)}, "tfds build")]
    for bad, word in cases:
        with pytest.raises(DataError) as e:
            sources.build_source(bad)
        assert word in str(e.value) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(ConfigError, match="does not read 'classes'"):
        sources.build_source({**spec, "classes": "River"})


def test_without_tensorflow_datasets_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)   # import fails
    with pytest.raises(ConfigError) as e:
        sources.build_source(sources.parse_spec("tfds:eurosat/rgb?split=train"))
    assert "pip install 'remoteclip_jax[tfds]'" in str(e.value) and "\n" not in str(e.value)
