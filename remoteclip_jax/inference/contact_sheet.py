"""Contact sheets of search hits, so a person can look: a PNG grid and a self-contained HTML page.

One row per query: the query (text, or the query image) first, then its hits best first, each
captioned with rank, score and file name. Thumbnails are embedded in the HTML as base64 JPEG, so
the page can be mailed or moved without the images. An image that can no longer be read (moved
since it was embedded) gets a grey placeholder instead of failing the sheet.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import io
import os
import textwrap
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont, ImageOps

from remoteclip_jax.data.images import ImageReadError, open_rgb
from remoteclip_jax.files import atomic_write

THUMB = 160
CAPTION_LINES = 2
PAD = 6
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)


@dataclasses.dataclass
class QueryHits:
    """A query and what it found.

    Attributes:
        query: the query text, or the query image's path.
        is_image: True when `query` is an image path.
        hits: (image path or tile id, score) best first.
        rows: the hits' rows in the store searched.
        images: what to draw per hit (paths or uint8 arrays; default: the hit paths).
    """

    query: str
    is_image: bool
    hits: list[tuple[str, float]]
    rows: list[int] = dataclasses.field(default_factory=list)
    images: list | None = None

    def pictures(self) -> list:
        return self.images if self.images is not None else [p for p, _ in self.hits]


def thumbnail(path, size: int = THUMB) -> Image.Image:
    """A size x size RGB thumbnail (aspect kept, padded white) of an image file or uint8 array;
    grey when unreadable."""
    try:
        image = open_rgb(path)
    except ImageReadError:
        return Image.new("RGB", (size, size), (180, 180, 180))
    image = ImageOps.contain(image, (size, size), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (size, size), BACKGROUND)
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return canvas


def _font(size: int):
    return ImageFont.load_default(size=size)


def png_contact_sheet(results: Sequence[QueryHits], path: str, thumb: int = THUMB) -> str:
    """Writes a PNG grid: a row per query, the query cell first, then one cell per hit."""
    font = _font(max(10, thumb // 12))
    line_height = font.getbbox("Ag")[3] + 2
    cell_w, cell_h = thumb + 2 * PAD, thumb + 2 * PAD + CAPTION_LINES * line_height
    columns = 1 + max((len(r.hits) for r in results), default=0)
    sheet = Image.new("RGB", (columns * cell_w, max(1, len(results)) * cell_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    chars = max(8, int(thumb / (font.getlength("n") or 6)))
    for row, result in enumerate(results):
        y = row * cell_h
        if result.is_image:
            sheet.paste(thumbnail(result.query, thumb), (PAD, y + PAD))
            label = ["query", os.path.basename(result.query)]
        else:
            lines = textwrap.wrap(result.query, chars)[:thumb // line_height]
            for j, line in enumerate(lines):
                draw.text((PAD, y + PAD + j * line_height), line, fill=INK, font=font)
            label = ["query (text)", ""]
        for j, text in enumerate(label):
            draw.text((PAD, y + PAD + thumb + j * line_height), text[:chars], fill=INK, font=font)
        draw.rectangle([0, y, cell_w - 1, y + cell_h - 1], outline=(200, 200, 200))
        for col, ((hit, score), picture) in enumerate(zip(result.hits, result.pictures()), 1):
            x = col * cell_w
            sheet.paste(thumbnail(picture, thumb), (x + PAD, y + PAD))
            caption = [f"#{col}  {score:.3f}", os.path.basename(hit)]
            for j, text in enumerate(caption):
                draw.text((x + PAD, y + PAD + thumb + j * line_height), text[:chars], fill=INK,
                          font=font)
    with atomic_write(path, "wb") as f:
        sheet.save(f, "PNG")
    return path


def _data_uri(path, thumb: int) -> str:
    buffer = io.BytesIO()
    thumbnail(path, thumb).save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def html_contact_sheet(results: Sequence[QueryHits], path: str, thumb: int = THUMB,
                       title: str = "search results") -> str:
    """Writes a self-contained HTML page (thumbnails embedded) with the same grid as the PNG."""
    esc = html.escape
    parts = [f"<!doctype html><meta charset='utf-8'><title>{esc(title)}</title>",
             "<style>body{font-family:sans-serif}td{vertical-align:top;padding:4px;"
             f"width:{thumb}px;font-size:12px;word-break:break-all}}"
             "img{display:block}</style>", f"<h1>{esc(title)}</h1><table>"]
    for result in results:
        if result.is_image:
            query = (f"<img src='{_data_uri(result.query, thumb)}' alt=''>"
                     f"<b>query</b><br>{esc(result.query)}")
        else:
            query = f"<b>query</b><br>{esc(result.query)}"
        cells = [f"<td>{query}</td>"]
        for rank, ((hit, score), picture) in enumerate(zip(result.hits, result.pictures()), 1):
            cells.append(f"<td><img src='{_data_uri(picture, thumb)}' alt='' title='{esc(hit)}'>"
                         f"#{rank} &nbsp; {score:.4f}<br>{esc(hit)}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    with atomic_write(path, encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path
