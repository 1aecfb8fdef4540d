"""load_pretrained reads every layout to the same variables; unknown layouts fail in one line."""
import jax
import numpy as np
import pytest

import remoteclip_jax as rc
from remoteclip_jax.models import TINY_VIT
from remoteclip_jax.weights import model_dir
from tests.helpers.openclip import build_openclip, max_relative_error, reference_inputs, torch
from remoteclip_jax.errors import WeightsError


@pytest.fixture(scope="module")
def reference():
    return build_openclip(TINY_VIT)


def _tree_equal(a, b) -> bool:
    return (jax.tree.structure(a) == jax.tree.structure(b)
            and all(np.array_equal(x, np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))


def test_load_pretrained_reads_each_layout_and_a_plain_file(tmp_path, reference):
    variables = rc.load_openclip(reference.state_dict(), TINY_VIT)
    for fmt in ("orbax", "hf", "open_clip"):
        rc.save_pretrained(variables, TINY_VIT, str(tmp_path / fmt), format=fmt)
        assert model_dir.detect_layout(str(tmp_path / fmt)) == fmt
    torch.save(reference.state_dict(), tmp_path / "plain.pt")
    images, texts, images_nhwc, ids = reference_inputs(32)
    with torch.no_grad():
        want = reference.encode_image(images).numpy()
    for path in ("orbax", "hf", "open_clip"):
        model, got = rc.load_pretrained(str(tmp_path / path))
        assert _tree_equal(got, variables), path
        assert max_relative_error(model.apply(got, images_nhwc, method="encode_image"), want) < 1e-5
    model, got = rc.load_pretrained(str(tmp_path / "plain.pt"), TINY_VIT)
    assert _tree_equal(got, variables)


def test_unknown_layout_lists_what_was_found_in_one_line(tmp_path):
    (tmp_path / "weights.npz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(WeightsError) as info:
        rc.load_pretrained(str(tmp_path))
    message = str(info.value)
    assert "\n" not in message and "unknown model directory layout (found: notes.txt, weights.npz)" in message
    with pytest.raises(WeightsError, match="no such file or directory"):
        rc.load_pretrained(str(tmp_path / "absent"))


def test_a_checkpoint_file_needs_the_model_name(tmp_path, reference):
    torch.save(reference.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(WeightsError, match="give the model or preset name"):
        rc.load_pretrained(str(tmp_path / "plain.pt"))


def test_a_model_name_must_agree_with_the_directory(tmp_path, reference):
    variables = rc.load_openclip(reference.state_dict(), TINY_VIT)
    rc.save_pretrained(variables, TINY_VIT, str(tmp_path), format="hf")
    rc.load_pretrained(str(tmp_path), TINY_VIT)  # the same architecture and activation: fine
    with pytest.raises(WeightsError, match=r"\(quick_gelu\), not custom config \(gelu\)"):
        rc.load_pretrained(str(tmp_path), {**TINY_VIT, "quick_gelu": False})


def test_save_pretrained_rejects_an_unknown_format(tmp_path):
    with pytest.raises(WeightsError, match="choose one of hf, open_clip, orbax"):
        rc.save_pretrained({"params": {}}, TINY_VIT, str(tmp_path), format="onnx")
