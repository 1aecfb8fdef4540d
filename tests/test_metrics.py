"""Metrics: clu aggregation, metrics.jsonl, TensorBoard records (checked with protobuf), plot."""
import json
import struct

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from remoteclip_jax.train import metrics


def _event_class():
    """tensorflow.Event / Summary declared from their .proto field numbers, parsed by protobuf."""
    fdp = descriptor_pb2.FileDescriptorProto(name="event_test.proto", package="tbtest")
    F = descriptor_pb2.FieldDescriptorProto
    value = fdp.message_type.add(name="Value")
    value.field.add(name="tag", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    value.field.add(name="simple_value", number=2, type=F.TYPE_FLOAT, label=F.LABEL_OPTIONAL)
    summary = fdp.message_type.add(name="Summary")
    summary.field.add(name="value", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                      type_name=".tbtest.Value")
    event = fdp.message_type.add(name="Event")
    event.field.add(name="wall_time", number=1, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    event.field.add(name="step", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    event.field.add(name="file_version", number=3, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    event.field.add(name="summary", number=5, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                    type_name=".tbtest.Summary")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tbtest.Event"))


def _records(path):
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        payload = data[pos + 12:pos + 12 + length]
        (payload_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        assert header_crc == metrics._masked_crc(header)
        assert payload_crc == metrics._masked_crc(payload)
        out.append(payload)
        pos += 16 + length
    return out


def test_crc32c_matches_the_standard_check_values():
    # RFC 3720 B.4 / the CRC catalogue's CRC-32/ISCSI check value, and 32 zero bytes.
    assert metrics.crc32c(b"123456789") == 0xE3069283
    assert metrics.crc32c(bytes(32)) == 0x8A9136AA


def test_tensorboard_file_parses_as_event_protos(tmp_path):
    writer = metrics.TensorBoardWriter(tmp_path)
    writer.scalars(7, {"train/loss": 1.25, "train/mfu": None, "train/lr": float("nan")})
    writer.scalars(300, {"eval/rsicd/mean_recall": 0.5})
    writer.close()
    assert "tfevents" in writer.path.name
    Event = _event_class()
    events = [Event.FromString(r) for r in _records(writer.path)]
    assert events[0].file_version == "brain.Event:2"
    assert events[1].step == 7
    assert [(v.tag, v.simple_value) for v in events[1].summary.value] == [("train/loss", 1.25)]
    assert events[2].step == 300 and events[2].summary.value[0].simple_value == 0.5


def test_metrics_jsonl_one_object_per_logged_step_and_last_write_wins(tmp_path):
    logger = metrics.MetricsLogger(tmp_path)
    logger.write(1, {"train/loss": 2.0, "train/mfu": None})
    logger.write(2, {"train/loss": float("inf")})
    logger.write(2, {"train/loss": 1.5})  # a resumed run re-logs step 2
    logger.close()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[0] == {"step": 1, "train/loss": 2.0, "train/mfu": None}
    assert lines[1]["train/loss"] is None  # JSON has no inf
    assert metrics.read_metrics(tmp_path / "metrics.jsonl")[1] == {"step": 2, "train/loss": 1.5}


def test_aggregation_averages_loss_and_keeps_last_lr():
    rng = np.random.default_rng(0)
    raw = [{"loss": rng.random(), "grad_norm": rng.random(), "lr": 0.1 * i,
            "logit_scale": 10.0 + i, "param_norm": 3.0 + i} for i in range(5)]
    merged = metrics.step_metrics(raw[0])
    for r in raw[1:]:
        merged = merged.merge(metrics.step_metrics(r))
    out = merged.compute()
    assert out["loss"] == pytest.approx(np.mean([r["loss"] for r in raw]), rel=1e-6)
    assert out["grad_norm"] == pytest.approx(np.mean([r["grad_norm"] for r in raw]), rel=1e-6)
    assert out["lr"] == pytest.approx(0.4) and out["logit_scale"] == pytest.approx(14.0)


def test_loss_curve_png_is_written(tmp_path):
    path = metrics.plot_loss_curve([{"step": s, "train/loss": 1 / s} for s in range(1, 20)],
                                   tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert metrics.plot_loss_curve([{"step": 1}], tmp_path / "none.png") is None


def test_peak_flops_table_and_override():
    assert metrics.peak_flops_per_device(override_tflops=2.0) == 2e12
    # CPUs are not in the table: MFU is reported as null rather than guessed.
    assert metrics.peak_flops_per_device() is None
