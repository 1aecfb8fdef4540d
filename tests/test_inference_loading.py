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


def _openclip_file(tmp_path):
    """A random open_clip TINY_VIT saved as an OpenCLIP .pt (torch.save of its state dict) and
    its config as a .json (what --arch takes for sizes that have no name)."""
    import json

    from tests.helpers.openclip import build_openclip, torch

    pt, config = tmp_path / "tiny.pt", tmp_path / "tiny.json"
    torch.save(build_openclip(dict(rc.models.TINY_VIT), seed=5).state_dict(), pt)
    config.write_text(json.dumps(dict(rc.models.TINY_VIT)))
    return str(pt), str(config)


def test_weights_file_as_model_equals_the_import_weights_path_on_real_aid_images(
        tmp_path, shared_data, monkeypatch, capsys):
    """classify / embed / search with `--model FILE.pt --arch ...` give what the directory that
    `import-weights` writes from the same file gives; the second use reads the cached conversion."""
    import csv

    from remoteclip_jax import cli
    from remoteclip_jax.data.store import EmbeddingStore
    from tests.helpers.inference import aid_subset

    images = tmp_path / "aid"
    aid_subset(shared_data, images, per_class=2)
    monkeypatch.setenv("REMOTECLIP_JAX_CACHE", str(tmp_path / "cache"))
    pt, config = _openclip_file(tmp_path)
    assert cli.main(["import-weights", pt, "--model", config, "--out", str(tmp_path / "dir")]) == 0
    for name, model in (("file", ["--model", pt, "--arch", config]),
                        ("dir", ["--model", str(tmp_path / "dir")])):
        assert cli.main(["classify", str(images), *model, "--classes", "airport,beach,forest",
                         "--out", str(tmp_path / name)]) == 0
        assert cli.main(["embed", str(images), *model, "--out", str(tmp_path / name / "store")]) == 0
        assert cli.main(["search", str(tmp_path / name / "store"), *model, "--text", "a beach",
                         "--out", str(tmp_path / name / "hits"), "--sheet", "none"]) == 0
    err = capsys.readouterr().err
    assert err.count("converting") == 1 and len(list((tmp_path / "cache" / "weights").iterdir())) == 1

    def rows(name, file):
        with open(tmp_path / name / file, newline="") as f:
            return list(csv.reader(f))

    for file in ("predictions.csv", "hits/results.csv"):
        a, b = rows("file", file), rows("dir", file)
        assert [[v for v in r if not _number(v)] for r in a] == \
            [[v for v in r if not _number(v)] for r in b] and len(a) > 1   # paths, labels
        for x, y in zip(a[1:], b[1:]):
            np.testing.assert_allclose([float(v) for v in x if _number(v)],
                                       [float(v) for v in y if _number(v)], atol=1e-6)
    np.testing.assert_array_equal(EmbeddingStore(str(tmp_path / "file" / "store")).features(),
                                  EmbeddingStore(str(tmp_path / "dir" / "store")).features())


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_weights_file_needs_an_architecture_unless_its_name_is_a_presets(tmp_path):
    from remoteclip_jax.inference.loading import arch_of_file

    assert arch_of_file("/x/RemoteCLIP-ViT-B-32.pt") == "RemoteCLIP-ViT-B-32"
    assert arch_of_file("/x/any.pt", "ViT-B-32-quickgelu") == "ViT-B-32-quickgelu"
    (tmp_path / "tiny.pt").write_bytes(b"\0")
    with pytest.raises(UserError, match="tiny.pt: a weights file does not say its architecture; "
                                        "pass --arch NAME"):
        load_model(tmp_path / "tiny.pt")
