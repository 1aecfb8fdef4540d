"""Contact sheets: one row per query, one cell per hit, readable thumbnails; a vanished image
gets a placeholder; the HTML page embeds every thumbnail."""
import re

import numpy as np
from PIL import Image

from remoteclip_jax.inference.contact_sheet import (QueryHits, html_contact_sheet,
                                                    png_contact_sheet, thumbnail)
from tests.helpers.inference import random_images


def test_png_grid_has_a_row_per_query_and_a_cell_per_hit(tmp_path):
    paths = random_images(tmp_path, 4)
    results = [QueryHits("storage tanks by a harbour", False, [(paths[0], 0.31), (paths[1], 0.29)]),
               QueryHits(paths[2], True, [(paths[3], 0.9), (str(tmp_path / "gone.png"), 0.8)])]
    sheet = Image.open(png_contact_sheet(results, str(tmp_path / "sheet.png"), thumb=64))
    cell_w = 64 + 12
    assert sheet.width == 3 * cell_w and sheet.height % 2 == 0
    pixels = np.asarray(sheet)
    row_h = sheet.height // 2
    # The first hit's thumbnail is the image itself (random noise, not the white background).
    assert pixels[6:70, cell_w + 6:cell_w + 70].std() > 30
    # The vanished image is a uniform grey placeholder.
    grey = pixels[row_h + 6:row_h + 70, 2 * cell_w + 6:2 * cell_w + 70]
    assert np.all(grey == 180)


def test_thumbnail_keeps_aspect_and_pads_white(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((20, 80, 3), np.uint8)).save(path)
    thumb = np.asarray(thumbnail(str(path), 40))
    assert thumb.shape == (40, 40, 3)
    assert np.all(thumb[0] == 255) and np.all(thumb[20] == 0)


def test_html_page_embeds_every_thumbnail_and_escapes_text(tmp_path):
    paths = random_images(tmp_path, 3)
    results = [QueryHits("<b>ships</b> & boats", False, [(p, 0.5) for p in paths])]
    page = open(html_contact_sheet(results, str(tmp_path / "sheet.html"))).read()
    assert len(re.findall(r"src='data:image/jpeg;base64,", page)) == 3
    assert "&lt;b&gt;ships&lt;/b&gt; &amp; boats" in page
