"""`remoteclip-jax import-weights` / `export-weights`: every source in, every format out."""
import json

import jax
import numpy as np
import pytest

from remoteclip_jax import cli
from remoteclip_jax.models import TINY_RESNET, TINY_VIT
from remoteclip_jax.weights.openclip import read_state_dict
from tests.helpers.openclip import build_openclip, torch


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def tiny(tmp_path):
    config_path = tmp_path / "tiny.json"
    config_path.write_text(json.dumps(TINY_VIT))
    reference = build_openclip(TINY_VIT)
    torch.save(reference.state_dict(), tmp_path / "tiny.pt")
    return reference, str(config_path)


def test_import_file_then_export_every_format(tmp_path, capsys, tiny):
    reference, config = tiny
    code, out, err = _run(capsys, "import-weights", str(tmp_path / "tiny.pt"), "--model", config,
                          "--out", str(tmp_path / "orbax"))
    assert code == 0, err
    assert "activation quick_gelu" in out
    for fmt, out_name in (("safetensors", "back.safetensors"), ("pt", "back.pt")):
        code, out, err = _run(capsys, "export-weights", str(tmp_path / "orbax"), "--format", fmt,
                              "--out", str(tmp_path / out_name))
        assert code == 0, err
        back = read_state_dict(str(tmp_path / out_name))
        for key, value in reference.state_dict().items():
            assert np.array_equal(back[key], value.numpy()), (fmt, key)
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"eval/aid/top1": 0.5}))
    for fmt, marker in (("hf", "config.json"), ("open_clip", "open_clip_config.json")):
        code, out, err = _run(capsys, "export-weights", str(tmp_path / "orbax"), "--format", fmt,
                              "--out", str(tmp_path / fmt), "--license", "cc-by-4.0",
                              "--eval-results", str(results), "--training-steps", "1200")
        assert code == 0, err
        card = (tmp_path / fmt / "README.md").read_text()
        assert (tmp_path / fmt / marker).exists()
        assert "license: cc-by-4.0" in card and "| aid | top1 | 0.5 |" in card and "**steps:** 1200" in card


def test_import_from_hf_and_open_clip_directories_without_a_model_name(tmp_path, capsys, tiny):
    import remoteclip_jax as rc
    reference, _ = tiny
    variables = rc.load_openclip(reference.state_dict(), TINY_VIT)
    for fmt in ("hf", "open_clip"):
        rc.save_pretrained(variables, TINY_VIT, str(tmp_path / fmt), format=fmt)
        code, out, err = _run(capsys, "import-weights", str(tmp_path / fmt), "--out", str(tmp_path / f"{fmt}-in"))
        assert code == 0, err
        _, again = rc.load_pretrained(str(tmp_path / f"{fmt}-in"))
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(variables)))


def test_bad_input_is_one_line_with_exit_code_2(tmp_path, capsys, tiny):
    import remoteclip_jax as rc
    cases = []
    (tmp_path / "empty").mkdir()
    cases.append((("import-weights", str(tmp_path / "empty"), "--out", str(tmp_path / "x")),
                  "unknown model directory layout"))
    cases.append((("import-weights", str(tmp_path / "tiny.pt"), "--out", str(tmp_path / "x")),
                  "give the model or preset name"))
    cases.append((("import-weights", str(tmp_path / "tiny.pt"), "--model", "RN50", "--out", str(tmp_path / "x")),
                  "missing"))
    rn = rc.load_openclip(build_openclip(TINY_RESNET).state_dict(), TINY_RESNET)
    rc.save_pretrained(rn, TINY_RESNET, str(tmp_path / "rn"), format="orbax")
    cases.append((("export-weights", str(tmp_path / "rn"), "--format", "hf", "--out", str(tmp_path / "rn-hf")),
                  "ModifiedResNet"))
    for argv, expected in cases:
        code, _, err = _run(capsys, *argv)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and expected in err, (argv, err)


@pytest.mark.parametrize("command, flags", [
    ("import-weights", ["--model", "--out"]),
    ("export-weights", ["--format", "--out", "--license", "--eval-results", "--training-data", "--training-steps"]),
])
def test_help_documents_the_flags(capsys, command, flags):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: remoteclip-jax {command}") and all(f in text for f in flags)


@pytest.mark.slow  # a full-size ViT-B-32 written and read as orbax, safetensors and .pt
def test_preset_import_then_export_round_trips(tmp_path, capsys):
    full = build_openclip("ViT-B-32-quickgelu")
    torch.save(full.state_dict(), tmp_path / "remoteclip.pt")
    code, out, err = _run(capsys, "import-weights", str(tmp_path / "remoteclip.pt"), "--model",
                          "RemoteCLIP-ViT-B-32", "--out", str(tmp_path / "orbax"))
    assert code == 0, err
    code, out, err = _run(capsys, "export-weights", str(tmp_path / "orbax"), "--out", str(tmp_path / "b.safetensors"))
    assert code == 0 and "activation quick_gelu" in out, err
    back = read_state_dict(str(tmp_path / "b.safetensors"))
    for key, value in full.state_dict().items():
        assert np.array_equal(back[key], value.numpy()), key


def test_outputs_follow_one_overwrite_rule_the_umask_and_record_no_local_path(tmp_path, capsys, tiny):
    """An existing --out is replaced only with --overwrite (as `embed` asks); exported files get
    the umask's mode; model.json and the card name the source file and its SHA-256, not its
    local path."""
    import hashlib
    import os

    _, config = tiny
    pt = tmp_path / "tiny.pt"
    argv = ["import-weights", str(pt), "--model", config, "--out", str(tmp_path / "orbax")]
    assert _run(capsys, *argv)[0] == 0
    code, _, err = _run(capsys, *argv)
    assert code == 2 and "orbax: exists; use another --out, or --overwrite" in err
    assert _run(capsys, *argv, "--overwrite")[0] == 0
    digest = hashlib.sha256(pt.read_bytes()).hexdigest()[:16]
    recorded = json.loads((tmp_path / "orbax" / "model.json").read_text())["source"]
    assert recorded == f"tiny.pt (sha256 {digest})" and str(tmp_path) not in recorded
    umask = os.umask(0o022)
    try:
        out = ["export-weights", str(tmp_path / "orbax"), "--out", str(tmp_path / "b.safetensors")]
        assert _run(capsys, *out)[0] == 0
        assert (tmp_path / "b.safetensors").stat().st_mode & 0o777 == 0o644
        assert _run(capsys, *out)[0] == 2 and _run(capsys, *out, "--overwrite")[0] == 0
        card_out = ["export-weights", str(tmp_path / "orbax"), "--format", "hf", "--out", str(tmp_path / "hf")]
        assert _run(capsys, *card_out)[0] == 0
        card = (tmp_path / "hf" / "README.md").read_text()
        assert f"tiny.pt (sha256 {digest})" in card and str(tmp_path) not in card
    finally:
        os.umask(umask)
