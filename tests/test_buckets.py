"""gs:// paths: a run whose workdir, data and first weights are in a bucket equals one on disk.

Every file a run writes lands in the bucket; sources, model directories and conversions read
and write there. The bucket is a local GCS emulator (tests/helpers/fake_gcs.py); the tests skip
without it.
"""
import json
import os
import subprocess
import uuid

import numpy as np
import pytest

from remoteclip_jax import files
from tests.helpers import bucket_demo, fake_gcs
from tests.helpers.cli import ROOT, cli_env, main_command, run_main, run_then_kill


@pytest.fixture(scope="module")
def bucket():
    with fake_gcs.start() as env:
        yield env


def _fresh(prefix: str) -> str:
    return f"gs://{fake_gcs.BUCKET}/{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def data(bucket, tmp_path_factory):
    """(local root, bucket root) holding the same training records, evaluation files and first
    weights (tests/helpers/bucket_demo.py)."""
    local = tmp_path_factory.mktemp("data")
    bucket_demo.write_data(local)
    remote = _fresh("data")
    files.upload_tree(local, remote)
    return local, remote


def test_files_write_append_and_copy_folders_in_a_bucket(bucket, tmp_path):
    root = _fresh("files")
    with files.atomic_write(f"{root}/a/b.json") as f:
        f.write('{"x": 1}')
    assert files.as_path(f"{root}/a/b.json").read_text() == '{"x": 1}'
    assert files.size(f"{root}/a/b.json") == 8
    with pytest.raises(RuntimeError):  # a failed write leaves the old object as it was
        with files.atomic_write(f"{root}/a/b.json") as f:
            f.write("half")
            raise RuntimeError("interrupted")
    assert files.as_path(f"{root}/a/b.json").read_text() == '{"x": 1}'
    with files.atomic_write(f"{root}/w.bin", None) as tmp:  # writers that open files themselves
        with open(tmp, "wb") as f:
            f.write(b"\x00\x01")
    files.append_text(f"{root}/log.jsonl", "1\n")
    files.append_text(f"{root}/log.jsonl", "2\n")
    assert files.as_path(f"{root}/log.jsonl").read_text() == "1\n2\n"
    with files.local_folder(f"{root}/tree") as local:
        os.makedirs(os.path.join(local, "sub"))
        for name in ("top.txt", "sub/deep.txt"):
            with open(os.path.join(local, name), "w") as f:
                f.write(name)
    assert files.relative_files(root) == ["a/b.json", "log.jsonl", "tree/sub/deep.txt",
                                          "tree/top.txt", "w.bin"]
    with files.local_copy(f"{root}/w.bin") as local:
        assert open(local, "rb").read() == b"\x00\x01"
    # Local paths keep plain pathlib.
    assert type(files.as_path(tmp_path)) is type(tmp_path) and not files.is_remote(tmp_path)


# The demo model's smoke run, long enough that a SIGKILL lands between checkpoints.
STEPS, CHECKPOINT_EVERY, KILL_AFTER = 10, 2, 3
OVERRIDES = [f"--config.train.steps={STEPS}", f"--config.train.checkpoint_every={CHECKPOINT_EVERY}"]


def _command(workdir, root, *more):
    return main_command(f"--config=tests/helpers/bucket_demo.py:{root}", f"--workdir={workdir}",
                        *OVERRIDES, *more)


def _records(workdir):
    text = files.as_path(f"{workdir}/metrics.jsonl").read_text()
    return [json.loads(x) for x in text.splitlines() if x.endswith("}")]


def _losses(records):
    return {r["step"]: r["train/loss"] for r in records if "train/loss" in r}


def _last_step(workdir) -> int:
    if not files.as_path(f"{workdir}/metrics.jsonl").exists():
        return 0
    return max(_losses(_records(workdir)), default=0)


def _layout(workdir):
    """The run's files, with the names that differ between any two runs (random OCDBT data
    files, tensorboard's time/host/pid) generalised."""
    names = set()
    for name in files.relative_files(workdir):
        parts = name.split("/")
        if "d" in parts[:-1]:
            name = "/".join(parts[:parts.index("d") + 1]) + "/*"
        elif name.startswith("tensorboard/events.out.tfevents."):
            name = "tensorboard/events.out.tfevents.*"
        names.add(name)
    return names


@pytest.mark.slow
def test_run_in_a_bucket_survives_sigkill_and_equals_a_local_run(bucket, data, tmp_path):
    local_data, remote_data = data
    workdir = _fresh("run")
    env = cli_env(**bucket)
    log = tmp_path / "stderr.txt"
    # After step KILL_AFTER is logged and the first checkpoint is committed (on GCS, orbax
    # commits a step by writing its commit_success.txt).
    commit = files.as_path(f"{workdir}/checkpoints/{CHECKPOINT_EVERY}/commit_success.txt")
    run_then_kill(_command(workdir, remote_data), env, log,
                  lambda: _last_step(workdir) >= KILL_AFTER and commit.exists(), poll=0.2)
    first = _records(workdir)
    killed_at = max(_losses(first))
    assert KILL_AFTER <= killed_at < STEPS, "the run ended before the kill"

    # Resumed with a profile: the trace is written locally and uploaded into WORKDIR/profile.
    out = subprocess.run(_command(workdir, remote_data, "--profile"), cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"resuming from {workdir}/checkpoints step" in out.stdout, out.stdout[-2000:]
    resumed_from = int(out.stdout.split("resuming from")[1].split("step")[1].split()[0])
    assert resumed_from % CHECKPOINT_EVERY == 0 and resumed_from <= killed_at

    # The same run, uninterrupted, with its workdir and data on local paths.
    local = tmp_path / "local"
    ref = subprocess.run(_command(local, local_data), cwd=ROOT, env=cli_env(), capture_output=True,
                         text=True, timeout=400)
    assert ref.returncode == 0, ref.stderr[-3000:]
    expected = _losses(_records(local))
    assert sorted(expected) == list(range(1, STEPS + 1))
    got = _losses(first)
    got.update(_losses(_records(workdir)[len(first):]))
    assert sorted(got) == sorted(expected)
    for step in expected:
        np.testing.assert_allclose(got[step], expected[step], rtol=1e-6, err_msg=f"step {step}")

    # Every file of the local run (checkpoints with their manifests, config, metrics,
    # tensorboard, plots, export, eval results) is in the bucket, and nothing else but the profile.
    traces = {n for n in _layout(workdir) if n.startswith("profile/")}
    assert any(n.endswith(".xplane.pb") for n in traces), traces
    assert _layout(workdir) - traces == _layout(local)
    assert (json.loads(files.as_path(f"{workdir}/eval/results.json").read_text())
            == pytest.approx(json.loads((local / "eval/results.json").read_text()), rel=1e-5))
    assert (files.as_path(f"{workdir}/export/open_clip_config.json").read_text()
            == (local / "export/open_clip_config.json").read_text())
    from safetensors.numpy import load
    remote_weights = load(files.as_path(f"{workdir}/export/open_clip_model.safetensors")
                          .read_bytes())
    local_weights = load((local / "export/open_clip_model.safetensors").read_bytes())
    assert remote_weights.keys() == local_weights.keys()
    for key in local_weights:
        np.testing.assert_allclose(remote_weights[key], local_weights[key], rtol=1e-5,
                                   atol=1e-6, err_msg=key)

    # Eval and export modes read the bucket's checkpoint and write there too.
    files.as_path(f"{workdir}/eval/results.json").unlink()
    again = run_main(f"--config=tests/helpers/bucket_demo.py:{remote_data}",
                     f"--workdir={workdir}", *OVERRIDES, "--mode=eval", **bucket)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (json.loads(files.as_path(f"{workdir}/eval/results.json").read_text())
            == pytest.approx(json.loads((local / "eval/results.json").read_text()), rel=1e-5))
    exported = f"{workdir}/exported_again"
    out = run_main(f"--config=tests/helpers/bucket_demo.py:{remote_data}",
                   f"--workdir={workdir}", *OVERRIDES, "--mode=export",
                   f"--export_dir={exported}", **bucket)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "open_clip_model.safetensors" in files.relative_files(exported)


def test_sources_models_and_conversions_read_and_write_a_bucket(bucket, data, tmp_path):
    from remoteclip_jax.data import records, sources
    from remoteclip_jax.data.convert_annotations import convert_dataset
    from remoteclip_jax.data.images import open_rgb
    from remoteclip_jax.errors import DataError
    from remoteclip_jax.weights.model_dir import read_model_dir

    local, remote = data
    # Record shards: read by array_record straight from the bucket.
    there, here = records.RecordSource(f"{remote}/train"), records.RecordSource(local / "train")
    assert len(there) == len(here) == 48
    assert [there[i] for i in range(48)] == [here[i] for i in range(48)]
    # Caption files, counting manifests and image folders, with their images, as command words.
    for word in ("eval/scenes.jsonl", "count_manifest:eval/count_manifest.jsonl", "eval/images"):
        kind, _, path = word.rpartition(":")
        spec = lambda root: sources.parse_spec(f"{kind}:{root}/{path}" if kind else f"{root}/{path}")
        there, here = sources.build_source(spec(remote)), sources.build_source(spec(local))
        assert len(there) == len(here) > 0, word
        for i in range(len(here)):
            a, b = there[i], here[i]
            assert a.pop("path") == f"{remote}/{b.pop('path')[len(str(local)) + 1:]}", word
            assert a == b, word
        np.testing.assert_array_equal(open_rgb(there[0]["path"]), open_rgb(here[0]["path"]))
    # A webdataset shard.
    import tarfile
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        for name, payload in (("a.jpg", (local / "eval/images/000000.png").read_bytes()),
                              ("a.txt", b"two planes")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, __import__("io").BytesIO(payload))
    files.upload_tree(tmp_path, f"{remote}/wds")
    wds = sources.build_source(sources.parse_spec(f"webdataset:{remote}/wds/s.tar"))
    assert wds[0]["captions"] == ["two planes"] and wds[0]["image"] == (
        local / "eval/images/000000.png").read_bytes()
    # A detection dataset given by its root folder (DOTA: labelTxt/ and images/).
    (tmp_path / "dota/labelTxt").mkdir(parents=True)
    (tmp_path / "dota/labelTxt/P1.txt").write_text("gsd:0.3\n2 2 12 2 12 9 2 9 plane 0\n"
                                                   "14 14 30 14 30 30 14 30 ship 1\n")
    (tmp_path / "dota/images").mkdir()
    (tmp_path / "dota/images/P1.png").write_bytes((local / "eval/images/000001.png").read_bytes())
    files.upload_tree(tmp_path / "dota", f"{remote}/dota")
    there = list(sources.read_annotated(sources.parse_spec(f"dota:{remote}/dota")))
    here = list(sources.read_annotated(sources.parse_spec(f"dota:{tmp_path}/dota")))
    assert [(a.boxes, a.width, a.height, a.image_id) for a in there] == \
        [(b.boxes, b.width, b.height, b.image_id) for b in here]
    assert there[0].path == f"{remote}/dota/images/P1.png" and len(there[0].boxes) == 2
    # ... and its counting manifest, written into the bucket, names the bucket's image.
    from remoteclip_jax.data.readers import count_manifest
    for root in (remote, tmp_path):
        count_manifest.main(["--dota", f"{root}/dota", "--out", f"{root}/dota/count.jsonl"])
    there, here = (count_manifest.read_count_manifest(f"{root}/dota/count.jsonl")
                   for root in (remote, tmp_path))
    assert len(there) == len(here) == 2
    assert [(i.image, i.category, i.count) for i in there] == \
        [(f"{remote}/dota/images/P1.png", i.category, i.count) for i in here]
    # A model directory (as config.init_from and --model read it).
    (v_there, info_there), (v_here, info_here) = (read_model_dir(f"{remote}/init"),
                                                  read_model_dir(str(local / "init")))
    assert info_there.config == info_here.config
    import jax
    for a, b in zip(jax.tree.leaves(v_there), jax.tree.leaves(v_here)):
        np.testing.assert_array_equal(a, b)
    # convert-data from the bucket into the bucket (2 processes) equals the same conversion on
    # disk; a second conversion into the same folder is refused unless told to overwrite.
    out = _fresh("converted")
    for source_root, target, workers in ((remote, out, 2), (local, tmp_path / "converted", 1)):
        convert_dataset("captions", f"{source_root}/eval/scenes.jsonl", str(target), image_size=32,
                        shard_size=5, progress=False, workers=workers)
    assert files.as_path(f"{out}/summary.json").exists()
    there, here = records.RecordSource(out), records.RecordSource(tmp_path / "converted")
    assert len(there) == len(here) == 16
    for i in range(16):
        a, b = there[i], here[i]
        assert a.pop("image_id") == b.pop("image_id")
        assert a == b
    with pytest.raises(DataError, match="already holds a dataset"):
        convert_dataset("captions", f"{remote}/eval/scenes.jsonl", out, progress=False)
    convert_dataset("captions", f"{remote}/eval/scenes.jsonl", out, image_size=32, shard_size=8,
                    overwrite=True, progress=False)
    assert len(records.RecordSource(out)) == 16
    assert len(records.read_manifest(out)["shards"]) == 2


def test_logs_in_a_bucket_are_sent_at_checkpoints_not_at_every_step(bucket, monkeypatch):
    from remoteclip_jax.train import metrics

    monkeypatch.setattr(metrics, "REMOTE_UPLOAD_SECONDS", 3600.0)
    workdir = _fresh("logs")
    steps = lambda: [r["step"] for r in metrics.read_metrics(f"{workdir}/metrics.jsonl")]
    events = lambda: [n for n in files.relative_files(workdir) if n.startswith("tensorboard/")]
    logger = metrics.MetricsLogger(workdir)
    for step in range(1, 6):
        logger.write(step, {"train/loss": 1.0 / step})
    assert steps() == [1]  # the first record is sent at once, the rest when due
    size = files.size(f"{workdir}/{events()[0]}")
    logger.flush()  # what the loop calls at each checkpoint
    assert steps() == [1, 2, 3, 4, 5]
    assert files.size(f"{workdir}/{events()[0]}") > size
    logger.close()
    resumed = metrics.MetricsLogger(workdir)  # a resumed run continues the same log
    resumed.write(6, {"train/loss": 0.1})
    resumed.close()
    assert steps() == [1, 2, 3, 4, 5, 6] and len(events()) == 2


def test_wandb_with_a_bucket_workdir_keeps_its_files_in_a_local_folder(bucket, monkeypatch):
    import sys

    from remoteclip_jax.train import metrics
    from tests.test_metrics import _FakeWandb

    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    workdir = _fresh("wandb")
    for step in (1, 2):  # a run and its resume
        logger = metrics.MetricsLogger(workdir, wandb_project="rs")
        folder = fake.inits[-1]["dir"]
        assert os.path.isdir(folder) and not files.is_remote(folder)
        logger.write(step, {"train/loss": 1.0})
        logger.close()
        assert not os.path.exists(folder)
    assert fake.inits[0]["id"] == fake.inits[1]["id"]  # the run id is kept in the bucket
    assert files.as_path(f"{workdir}/wandb_run_id").exists()
