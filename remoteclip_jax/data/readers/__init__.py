"""Readers for the annotation formats remote-sensing datasets ship; each returns AnnotatedImages.

Errors in annotation files raise `AnnotationError`, whose message is `path:line: reason`; pass
`on_error=callback` to a reader to skip faulty lines or entries instead.
"""
from remoteclip_jax.data.readers.captions import (CAPTION_SUFFIXES, read_caption_csv,
                                                  read_caption_json, read_caption_jsonl,
                                                  read_captions)
from remoteclip_jax.data.readers.auair import read_auair
from remoteclip_jax.data.readers.carpk import read_carpk
from remoteclip_jax.data.readers.coco import read_coco
from remoteclip_jax.data.readers.dota import parse_dota_line, read_dota, read_dota_file
from remoteclip_jax.data.readers.errors import AnnotationError
from remoteclip_jax.data.readers.hrsc import read_hrsc, read_hrsc_file
from remoteclip_jax.data.readers.image_folder import read_image_folder, read_images
from remoteclip_jax.data.readers.levir import read_levir
from remoteclip_jax.data.readers.masks import (CLASS_TABLES, ClassTable, iter_masks,
                                               load_class_table, load_mask, read_masks)
from remoteclip_jax.data.readers.rsod import read_rsod
from remoteclip_jax.data.readers.stanford_drone import read_stanford_drone
from remoteclip_jax.data.readers.visdrone import read_visdrone
from remoteclip_jax.data.readers.voc import read_voc, read_voc_file
from remoteclip_jax.data.readers.webdataset import WebDatasetSource, iter_webdataset

__all__ = [
    "AnnotationError", "CAPTION_SUFFIXES", "CLASS_TABLES", "ClassTable", "WebDatasetSource",
    "iter_masks", "iter_webdataset",
    "load_class_table", "load_mask", "parse_dota_line", "read_caption_csv", "read_caption_json",
    "read_caption_jsonl", "read_captions", "read_coco", "read_dota", "read_dota_file",
    "read_image_folder", "read_images", "read_masks", "read_voc", "read_voc_file", "read_auair", "read_carpk",
    "read_hrsc", "read_hrsc_file", "read_levir", "read_rsod", "read_stanford_drone",
    "read_visdrone",
]
