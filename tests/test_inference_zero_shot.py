"""classify: zero-shot labels on real AID images equal a direct model.apply computation; the
console command writes predictions.csv with the documented columns; bad input exits 2."""
import csv
import json
import os
import subprocess

import numpy as np
import pytest

from remoteclip_jax.inference.zero_shot import classify, resolve_templates
from tests.helpers.cli import ROOT, cli_env
from tests.helpers.inference import (aid_subset, cli_command, corrupt_images, random_images,
                                     reference_image_features, reference_text_features,
                                     save_model_dir, tiny_model)
from remoteclip_jax.errors import ConfigError, DataError

TEMPLATES = ["a satellite photo of {}.", "an aerial view of the {}."]


@pytest.fixture(scope="module")
def aid(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("aid")
    return folder, aid_subset(shared_data, folder, per_class=3)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model_dir(tiny_model()[1], tmp_path_factory.mktemp("model") / "tiny")


def _reference_probabilities(paths, class_prompts, method):
    """Softmax of 100 x cosine against class vectors, in float64 numpy: 'average' averages a
    class's raw prompt features, 'openai' normalises each first; then normalise."""
    model, variables = tiny_model()
    classes = []
    for prompts in class_prompts:
        f = reference_text_features(model, variables, prompts, unit=method == "openai")
        mean = f.mean(axis=0)
        classes.append(mean / np.linalg.norm(mean))
    logits = 100.0 * reference_image_features(model, variables, paths) @ np.stack(classes).T
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("method", ["average", "openai"])
def test_scores_equal_softmax_of_100_cosine_from_direct_apply(aid, method):
    folder, paths = aid
    classes = ["BaseballField", "storage tanks", "Beach"]
    result = classify(folder, classes, model=tiny_model(), templates=TEMPLATES, top_k=3,
                      class_embedding=method)
    assert result.paths == paths and result.class_names == classes
    readable = ["baseball field", "storage tanks", "beach"]  # prompts use readable names
    expected = _reference_probabilities(paths, [[t.format(c) for t in TEMPLATES] for c in readable],
                                        method)
    np.testing.assert_allclose(result.probabilities, expected, atol=2e-5)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-9)


def test_console_command_writes_predictions_csv_that_matches_the_api(aid, model_dir, tmp_path):
    folder, paths = aid
    out = tmp_path / "out"
    done = subprocess.run(cli_command("classify", folder, "--model", model_dir,
                                      "--classes", "forest,beach,airport", "--out", out,
                                      "--top-k", "2"),
                          cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"classified {len(paths)} images, skipped 0" in done.stdout
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "label", "score", "label_2", "score_2"]
    api = classify(folder, "forest,beach,airport", model=model_dir)
    assert [r[0] for r in rows[1:]] == api.paths
    column = {name: j for j, name in enumerate(api.class_names)}
    for row, probabilities in zip(rows[1:], api.probabilities):
        listed = [float(row[2]), float(row[4])]
        # Each listed label has the listed score, best first (near-tied classes may swap).
        np.testing.assert_allclose(listed, [probabilities[column[row[1]]],
                                            probabilities[column[row[3]]]], atol=1e-5)
        np.testing.assert_allclose(listed, np.sort(probabilities)[::-1][:2], atol=1e-5)


def test_json_format_and_dataset_preset(aid, tmp_path):
    folder, paths = aid
    result = classify(paths, dataset="aid", model=tiny_model(), out_dir=tmp_path, fmt="json",
                      top_k=3)
    assert len(result.class_names) == 30
    data = json.loads((tmp_path / "predictions.json").read_text())
    assert [p["path"] for p in data["predictions"]] == paths
    assert data["predictions"][0]["label"] == result.labels[0]
    assert len(data["predictions"][0]["top"]) == 3
    assert resolve_templates("remoteclip", "aid") == resolve_templates("remoteclip", "AID")


def test_unreadable_images_are_skipped_listed_and_counted(aid, tmp_path):
    folder, paths = aid
    bad = corrupt_images(tmp_path / "bad")
    result = classify([paths[0]] + bad + [paths[1]], "a,b", model=tiny_model(), out_dir=tmp_path)
    assert result.paths == [paths[0], paths[1]]
    with open(tmp_path / "skipped.csv", newline="") as f:
        assert [r[0] for r in csv.reader(f)][1:] == bad
    with pytest.raises(DataError, match="none of the 2 images could be read"):
        classify(bad, "a,b", model=tiny_model())


def test_empty_folder_is_one_line_error_with_exit_code_2(model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    done = subprocess.run(cli_command("classify", tmp_path / "empty", "--model", model_dir,
                                      "--classes", "a,b", "--out", tmp_path / "out"),
                          cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no images found" in lines[0]
    assert not (tmp_path / "out" / "predictions.csv").exists()


@pytest.mark.parametrize("kwargs, message", [({"classes": None}, "no classes given"),
                                             ({"templates": "a photo"}, "--templates"),
                                             ({"fmt": "xml"}, "--format")])
def test_bad_options_are_user_errors(tmp_path, kwargs, message):
    random_images(tmp_path, 2)
    options = {"classes": "a,b", **kwargs}
    with pytest.raises(ConfigError, match=message):
        classify(tmp_path, model=tiny_model(), **options)



def test_class_folders_give_accuracy_and_a_confusion_matrix_and_one_image_its_label(
        aid, model_dir, tmp_path, capsys):
    """Folders named after the classes (any case) are the truth: accuracy printed and
    confusion.csv equal to scikit-learn's on the written predictions; one image prints its label."""
    from sklearn.metrics import confusion_matrix

    from remoteclip_jax import cli

    folder, paths = aid
    classes = ["forest", "beach", "airport"]
    assert cli.main(["classify", str(folder), "--model", model_dir, "--classes", ",".join(classes),
                     "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    with open(tmp_path / "out" / "predictions.csv", newline="") as f:
        predicted = [r[1] for r in list(csv.reader(f))[1:]]
    truth = [os.path.basename(os.path.dirname(p)).lower() for p in paths]
    accuracy = 100 * np.mean(np.asarray(predicted) == truth)
    assert f"top-1 accuracy {accuracy:.2f}% over {len(paths)} labelled images" in printed
    with open(tmp_path / "out" / "confusion.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true \\ predicted", *classes] and [r[0] for r in rows[1:]] == classes
    np.testing.assert_array_equal([[int(v) for v in r[1:]] for r in rows[1:]],
                                  confusion_matrix(truth, predicted, labels=classes))
    assert cli.main(["classify", paths[0], "--model", model_dir, "--classes", "a,b",
                     "--out", str(tmp_path / "one")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{paths[0]}: ") and "classified 1 image, skipped 0" in printed
    assert not (tmp_path / "one" / "confusion.csv").exists()
