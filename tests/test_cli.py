"""The `remoteclip-jax` command: every user mistake the project knows ends in one line on stderr,
exit code 2, and no traceback."""
import json
import subprocess
import sys

import jax
import jax.numpy as jnp

import remoteclip_jax as rc
from remoteclip_jax import checkpoint as ckpt
from remoteclip_jax.recipes import SMOKE_RESNET
from tests.helpers.cli import ROOT, cli_env
from tests.test_config import load


def cli(*args):
    return [sys.executable, "-m", "remoteclip_jax.cli", *args]


def _cases(tmp):
    """(name, argv, what the one line must say) for each known mistake; files made in `tmp`."""
    from remoteclip_jax.train import setup

    # A model directory of another architecture than the demo's, for init_from.
    model = rc.create_model(SMOKE_RESNET)
    s = model.image_size
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)),
                                    jnp.zeros((1, 77), jnp.int32))
    rc.save_pretrained(jax.device_get(variables), SMOKE_RESNET, str(tmp / "resnet"), format="orbax")
    # The rsicd_aid recipe's model, to evaluate a caption file with a corrupt image.
    small = load("rsicd_aid").model.to_dict()
    model = rc.create_model(small)
    s = model.image_size
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)),
                                    jnp.zeros((1, model.context_length), jnp.int32))
    rc.save_pretrained(jax.device_get(variables), small, str(tmp / "small"), format="orbax")
    # A workdir holding a checkpoint of the vitb32 smoke model.
    with ckpt.Checkpointer(tmp / "vit_run", setup.model_signature(load("vitb32", "smoke"))) as c:
        c.save(1, {"x": jnp.zeros(2)}, {})
    (tmp / "no_manifest").mkdir()
    (tmp / "empty.jsonl").write_text("\n")
    (tmp / "labelTxt").mkdir()
    (tmp / "labelTxt" / "P0001.txt").write_text("10 10 20 10 20 20 10 20 plane 0\n1 2 3 plane\n")
    (tmp / "bad.jpg").write_bytes(b"not a jpeg")
    (tmp / "val.jsonl").write_text(json.dumps({"image": str(tmp / "bad.jpg"), "captions": ["x"],
                                               "split": "val"}) + "\n")
    demo = ["train", "--config=configs/demo.py:smoke", f"--workdir={tmp / 'w'}"]
    rsicd = ["train", "--config=configs/rsicd_aid.py:smoke", f"--workdir={tmp / 'w2'}"]
    return [
        ("unknown config key", [*demo, "--config.optim.lrr=1"], 'Did you mean "lr"'),
        ("unknown eval task", [*demo, "--config.evals.synthetic_count.task=counting"],
         "did you mean 'count'"),
        ("key the entry does not read", [*demo, "--config.data.sources.scenes.split=train"],
         "does not read 'split'"),
        ("indivisible batch", [*demo, "--config.data.batch_size=10"], "multiple of 8"),
        ("missing init_from", [*demo, f"--config.init_from={tmp / 'nope.pt'}"],
         "no such file or directory"),
        ("mismatched init_from", [*demo, f"--config.init_from={tmp / 'resnet'}"], "resnet"),
        ("workdir of another model", ["train", "--config=configs/rn50.py:smoke",
                                      f"--workdir={tmp / 'vit_run'}"], "holds a checkpoint"),
        ("records without a manifest", [
            *rsicd, "--config.data.sources.scenes.kind=records",
            "--config.data.sources.scenes.num_images=1000", "--config.data.sources.scenes.image_size=64",
            f"--config.data.sources.scenes.path={tmp / 'no_manifest'}"], "manifest"),
        ("empty source", [*rsicd, "--config.data.sources.scenes.kind=jsonl",
                          "--config.data.sources.scenes.num_images=1000",
                          "--config.data.sources.scenes.image_size=64",
                          f"--config.data.sources.scenes.path={tmp / 'empty.jsonl'}"], "empty.jsonl"),
        ("corrupt image in a caption file", [
            "eval", "--config=configs/rsicd_aid.py", f"--workdir={tmp / 'w3'}",
            f"--config.init_from={tmp / 'small'}",
            f"--config.evals.rsicd_aid_val.path={tmp / 'val.jsonl'}"], "bad.jpg: unreadable image"),
        ("malformed DOTA line", ["convert-data", "dota", "--input", str(tmp / "labelTxt"),
                                 "--out", str(tmp / "dota_out")], "P0001.txt:2"),
        ("unknown sub-command", ["trian"], "did you mean 'train'"),
    ]


def test_every_known_user_mistake_ends_in_one_line_and_exit_code_2(tmp_path):
    cases = _cases(tmp_path)
    procs = []
    # Four at a time: each is a fresh Python that imports jax.
    for start in range(0, len(cases), 4):
        batch = [(name, subprocess.Popen(cli(*argv), cwd=ROOT, env=cli_env(8),
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True), expect)
                 for name, argv, expect in cases[start:start + 4]]
        for name, proc, expect in batch:
            out, err = proc.communicate(timeout=300)
            procs.append((name, proc.returncode, err, expect))
    failures = []
    for name, code, err, expect in procs:
        lines = [x for x in err.strip().splitlines() if x.strip()]
        last = lines[-1] if lines else ""
        if code != 2 or "Traceback" in err or not last.startswith("error: ") or expect not in last:
            failures.append(f"{name}: exit {code}, last line {last!r}")
    assert not failures, "\n".join(failures)


def test_every_sub_command_help_names_itself_and_shows_defaults(capsys):
    import pytest

    from remoteclip_jax import cli as command

    for name in command.COMMANDS:
        if name in command._ABSL_MODES:  # absl flags: --helpfull
            continue
        with pytest.raises(SystemExit) as info:
            command.main([name, "--help"])
        text = capsys.readouterr().out
        assert info.value.code == 0 and text.startswith(f"usage: remoteclip-jax {name} "), name
        assert "(default: " in text, name
