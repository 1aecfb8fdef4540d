"""The RemoteCLIP paper's evaluation suite in one command: zero-shot classification on its 12
scene datasets and cross-modal retrieval on RSITMD, RSICD and UCM.

    remoteclip-jax eval --config=configs/paper_suite.py --workdir=runs/paper \
        --config.init_from=RemoteCLIP-ViT-B-32.pt
    remoteclip-jax eval --config=configs/paper_suite.py:probes ...   # + linear probe, k-NN, few-shot
    remoteclip-jax eval --config=configs/paper_suite.py:probes_clean ...   # probes, clean protocol

Datasets are read from ``$REMOTECLIP_DATA`` (default ``./data``), one folder each, as
``data/README.md`` lays out: either the folder the reference code reads (ITRA's
``classification_datasets.py``: ``EuroSAT/2750``, ``PatternNet/images``, ``OPTIMAL-31/Images``,
...), or the short one (``AID/<class>/<image>``, ...); ``RSITMD/dataset_RSITMD.json`` (as it
ships) or ``RSITMD/dataset_rsitmd.json``, with ``RSITMD/images/``. A folder that is missing is
reported in one line and skipped; the others run. Point a single entry elsewhere with
``--config.evals.<name>.path=...``.

Protocol, as RemoteCLIP's and GeoRSCLIP's code evaluates: the paper's 80/20 split per class
(zero-shot on the last 20 %), RemoteCLIP's per-dataset prompt templates with class embeddings
averaged from raw prompt features, ITRA's class names, retrieval on the test split with ties
ranked as their expectation over random orders (results.md shows the [pessimistic,
optimistic] interval where ties matter).

The probes (``:probes``) run ITRA's protocol, which produced the paper's tables: its SGD linear
probe (best epoch chosen on test accuracy, labelled so in details.json) and its few-shot draw at
1, 2, 4, 8 and 16 shots, the counts ITRA's parser offers (``itra/training/params.py`` line 407).
``:probes_clean`` runs the clean protocol instead (scikit-learn logistic regression, C chosen on
a split of train; few-shot up to 32 shots).
"""
import os
import pathlib

import ml_collections

from remoteclip_jax import config as schema
from remoteclip_jax import recipes
from remoteclip_jax.evaluate.itra_probes import ITRA_SHOTS

DATA = pathlib.Path(os.environ.get("REMOTECLIP_DATA", "data"))

# Entry name (also the key of its class-name table and templates) -> the folder of class folders
# under DATA: the short name, then where ITRA reads it (branch test,
# itra/data/classification_datasets.py, the line given), which is looked for first.
ZERO_SHOT = {
    "aid": ("AID", "AID_dataset/AID"),                                             # l.193
    "eurosat": ("EuroSAT", "EuroSAT/2750"),                                        # l.125
    "mlrsnet": ("MLRSNet", "MLRSNet/Images"),                                      # l.213
    "resisc45": ("RESISC45", "NWPU-RESISC45"),                                     # l.229
    "optimal31": ("OPTIMAL-31", "OPTIMAL-31/Images"),                              # l.161
    "patternnet": ("PatternNet", "PatternNet/images"),                             # l.145
    "rsc11": ("RSC11", "RS_C11_Database"),                                         # l.177
    "rs2800": ("RS2800", "RS2800/RS_images_2800"),                                 # l.329
    "rsicb128": ("RSI-CB128",),                                                    # l.249
    "rsicb256": ("RSI-CB256",),                                                    # l.281
    "siriwhu": ("SIRI-WHU", "Google dataset of SIRI-WHU_earth_im_tiff/12class_tif"),  # l.313
    "whurs19": ("WHU-RS19",),                                                      # l.265
}
# Entry name -> (Karpathy-style caption file as it ships, other spellings; image folder), under DATA.
RETRIEVAL = {
    "rsitmd": (("RSITMD/dataset_RSITMD.json", "RSITMD/dataset_rsitmd.json"), "RSITMD/images"),
    "rsicd": (("RSICD/dataset_rsicd.json",), "RSICD/RSICD_images"),
    "ucm": (("UCM/dataset_ucm.json",), "UCM/images"),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = schema.get_base_config()
    c.model = "ViT-B-32-quickgelu"      # RemoteCLIP's and GeoRSCLIP's B/32 run QuickGELU
    c.init_from = ""                    # the weights to evaluate: a checkpoint or model directory
    c.eval.batch_size = 256
    c.eval.model_name = "RemoteCLIP-ViT-B-32"
    for name, folders in ZERO_SHOT.items():
        c.evals[name] = schema.evaluation("zeroshot", kind="image_folder",
                                          path=recipes.find_data(DATA, *folders),
                                          templates="remoteclip", class_embedding="average")
    for name, (captions, images) in RETRIEVAL.items():
        c.evals[name] = schema.evaluation("retrieval", kind="caption_json", split="test",
                                          path=recipes.find_data(DATA, *captions),
                                          image_root=str(DATA / images))

    def probes(c, protocol="itra"):  # the paper's linear probe, k-NN and few-shot tables
        shots = ITRA_SHOTS if protocol == "itra" else schema.EVAL_DEFAULTS["shots"]
        for name, folders in ZERO_SHOT.items():
            source = dict(kind="image_folder", path=recipes.find_data(DATA, *folders))
            c.evals[f"{name}_probe"] = schema.evaluation("linear_probe", **source, protocol=protocol)
            c.evals[f"{name}_knn"] = schema.evaluation("knn", **source)
            c.evals[f"{name}_fewshot"] = schema.evaluation("fewshot", **source, protocol=protocol,
                                                           shots=shots)

    return recipes.variant(c, arg, "paper_suite.py", probes=probes,
                           probes_clean=lambda c: probes(c, "clean"))
