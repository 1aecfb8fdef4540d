"""The demo's smoke run with its data and first weights under one root, local or ``gs://``.

    --config=tests/helpers/bucket_demo.py:ROOT

ROOT/train: training records; ROOT/eval: scenes.jsonl and count_manifest.jsonl over images/ (as
`remoteclip_jax.data.synthetic.export_scenes` writes them); ROOT/init: an open_clip model
directory of the smoke model (`config.init_from`). `write_data` makes such a root.
"""
import importlib.util
import pathlib

from remoteclip_jax import config as schema

_DEMO = pathlib.Path(__file__).resolve().parents[2] / "configs" / "demo.py"


def _demo_config(arg: str):
    spec = importlib.util.spec_from_file_location("demo_config", _DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def get_config(root: str):
    c = _demo_config("smoke")
    c.init_from = f"{root}/init"
    c.data.sources = {"scenes": schema.source(kind="records", path=f"{root}/train")}
    c.evals = {
        "retrieval": schema.evaluation("retrieval", kind="jsonl", path=f"{root}/eval/scenes.jsonl"),
        "count": schema.evaluation("count", kind="count_manifest",
                                   path=f"{root}/eval/count_manifest.jsonl"),
    }
    return c


def write_data(root: pathlib.Path) -> None:
    """Training records, evaluation files and first weights for `get_config(root)`."""
    import jax

    from remoteclip_jax.data import synthetic
    from remoteclip_jax.models.clip import create_model, init_variables
    from remoteclip_jax.train.setup import model_spec
    from remoteclip_jax.weights.model_dir import save_pretrained

    synthetic.write_synthetic_records(root / "train", 48, 32, seed=0, shard_size=20,
                                      progress=False)
    synthetic.export_scenes(root / "eval", 16, 32, seed=1, progress=False)
    spec = model_spec(get_config(str(root)))
    variables = init_variables(create_model(spec), jax.random.PRNGKey(3))
    save_pretrained(jax.device_get(variables), spec, str(root / "init"), format="open_clip")
