"""Step manifests: what a finished checkpoint step holds, and the verdicts read back against it."""
import json

from remoteclip_jax import checkpoint_manifest as manifest


def _step(tmp_path):
    """A step directory shaped like orbax's: step record, commit marker, two items."""
    step = tmp_path / "7"
    (step / "state" / "d").mkdir(parents=True)
    (step / "data").mkdir()
    (step / "_CHECKPOINT_METADATA").write_text(json.dumps({"custom_metadata": {}}))
    (step / "state" / "d" / "chunk").write_bytes(b"123456789")
    (step / "state" / "_METADATA").write_text("{}")
    (step / "data" / "process_0-of-1.json").write_text("{}")
    return step


def test_manifest_records_size_and_the_standard_crc32_of_each_file(tmp_path):
    step = _step(tmp_path)
    files = json.loads(manifest.write_manifest(step).read_text())["files"]
    # 0xCBF43926 is CRC-32's published check value for b"123456789".
    assert files["state/d/chunk"] == {"size": 9, "crc32": 0xCBF43926}
    assert sorted(files) == ["data/process_0-of-1.json", "state/_METADATA", "state/d/chunk"]
    assert not list(step.glob(".*partial"))


def test_files_orbax_rewrites_at_commit_do_not_break_the_verdict(tmp_path):
    step = _step(tmp_path)
    manifest.write_manifest(step)
    (step / "_CHECKPOINT_METADATA").write_text(json.dumps({"commit_timestamp_nsecs": 1}))
    (step / "commit_success.txt").write_text("Checkpoint commit was successful")
    assert manifest.inspect_step(step) == manifest.StepIntegrity(manifest.INTACT)


def test_truncated_missing_or_changed_files_are_named(tmp_path):
    step = _step(tmp_path)
    manifest.write_manifest(step)
    chunk = step / "state" / "d" / "chunk"
    chunk.write_bytes(b"1234")
    verdict = manifest.inspect_step(step)
    assert verdict.status == manifest.DAMAGED and "chunk has 4 bytes, 9 were written" in verdict.reason
    chunk.write_bytes(b"123456780")
    assert "CRC-32" in manifest.inspect_step(step).reason
    chunk.unlink()
    assert str(chunk) in manifest.inspect_step(step).reason


def test_unreadable_manifest_or_step_record_is_damage(tmp_path):
    step = _step(tmp_path)
    (step / manifest.MANIFEST_NAME).write_text('{"files": ')
    assert not manifest.inspect_step(step).usable
    (step / manifest.MANIFEST_NAME).unlink()
    (step / "_CHECKPOINT_METADATA").write_text("")
    assert "_CHECKPOINT_METADATA" in manifest.inspect_step(step).reason


def test_step_without_manifest_is_unverified_when_orbax_markers_are_there(tmp_path):
    step = _step(tmp_path)
    assert manifest.inspect_step(step, items=("state", "data")).status == manifest.UNVERIFIED
    assert not manifest.has_manifest(step)
    verdict = manifest.inspect_step(step, items=("state", "data", "extra"))
    assert verdict.status == manifest.DAMAGED and "extra is missing" in verdict.reason
