"""CLIP byte-level BPE tokenizer whose ids equal ``open_clip.tokenize``.

The rules (learned from OpenAI CLIP / open_clip's ``SimpleTokenizer``; this is an
independent implementation):

1. clean: ``ftfy.fix_text``, ``html.unescape`` twice, collapse whitespace, strip,
   lower-case;
2. split with CLIP's pre-tokenizer regex (contractions, runs of letters, single
   digits, runs of other non-space characters, and the literal special tokens);
3. map each piece's UTF-8 bytes to printable characters, mark the last one with
   ``</w>`` and apply the BPE merges in rank order;
4. wrap in ``[49406] + ids + [49407]``, zero-pad to the context length; an
   over-long row is truncated and its last id forced to 49407.

Speed comes from three things open_clip does not do: ftfy/html are skipped for
plain printable ASCII (on which both are the identity, pinned by a test); the
cache is keyed by whole space-separated chunks of the cleaned text and stores
ids, so a known word costs one dict lookup (no regex, byte re-encoding, string
joins or splits); and padding is one vectorised numpy scatter.
"""
from __future__ import annotations

from remoteclip_jax.errors import DataError
import gzip
import html
import itertools
import os
import re as std_re
import threading
from typing import Sequence

import ftfy
import numpy as np
import regex

__all__ = [
    "DEFAULT_CONTEXT_LENGTH",
    "EOT_ID",
    "SOT_ID",
    "VOCAB_SIZE",
    "Tokenizer",
    "clean_text",
    "default_vocab_path",
    "tokenize",
]

DEFAULT_CONTEXT_LENGTH = 77
SOT_TOKEN = "<start_of_text>"
EOT_TOKEN = "<end_of_text>"
SOT_ID = 49406
EOT_ID = 49407
VOCAB_SIZE = 49408
# The vocabulary holds 256 byte symbols, their 256 end-of-word forms, this many
# merges, and the two special tokens: 256 + 256 + 48894 + 2 = 49408.
_NUM_MERGES = VOCAB_SIZE - 2 * 256 - 2
_END_OF_WORD = "</w>"

# CLIP's pre-tokenizer. The special tokens come first so that their literal text
# in a caption becomes the special id, exactly as in CLIP.
_PIECE_RE = regex.compile(
    regex.escape(SOT_TOKEN)
    + "|"
    + regex.escape(EOT_TOKEN)
    + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
# Anything outside printable ASCII (minus '&', which html.unescape acts on), tab and
# newline may be changed by ftfy or html.unescape; such texts take the full path.
_NEEDS_FULL_CLEAN = std_re.compile(r"[^\t\n\x20-\x25\x27-\x7e]")


def default_vocab_path() -> str:
    """Path of the bundled CLIP BPE merge list (``bpe_simple_vocab_16e6.txt.gz``)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "bpe_simple_vocab_16e6.txt.gz")


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes, indexed by byte value.

    Bytes that are already visible, non-space Latin-1 characters stand for
    themselves; the other 68 (controls, space, DEL, NBSP, soft hyphen) are moved,
    in byte order, to code points 256, 257, ... so that no symbol is whitespace.
    """
    visible = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    symbols = []
    next_free = 256
    for byte in range(256):
        if byte in visible:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(next_free))
            next_free += 1
    return symbols


def _base_vocab_order(symbols: list[str]) -> list[str]:
    """The order of the 256 single-symbol ids: visible bytes first, then the moved ones."""
    visible = [s for s in symbols if ord(s) < 256]
    moved = [s for s in symbols if ord(s) >= 256]
    return visible + moved


def clean_text(text: str) -> str:
    """CLIP's text normalisation: ftfy, html unescape (twice), whitespace collapse, lower.

    Args:
        text: raw caption.

    Returns:
        The cleaned, lower-cased text that the pre-tokenizer splits.
    """
    if not text.isascii() or _NEEDS_FULL_CLEAN.search(text) is not None:
        text = html.unescape(html.unescape(ftfy.fix_text(text)))
    # str.split() drops leading/trailing whitespace too, so no strip() is needed.
    return " ".join(text.split()).lower()


class Tokenizer:
    """CLIP BPE tokenizer with a lazily loaded vocabulary and a word cache.

    Args:
        vocab_path: gzip'd merge list; defaults to the bundled CLIP vocabulary.
        cache_size: most regex pieces whose ids are remembered (oldest evicted first).
    """

    def __init__(self, vocab_path: str | None = None, cache_size: int = 200_000):
        self.vocab_path = vocab_path or default_vocab_path()
        self.cache_size = int(cache_size)
        self._lock = threading.Lock()
        self._loaded = False
        self._encoder: dict[str, int] = {}
        self._decoder: list[str] = []
        self._ranks: dict[tuple[str, str], int] = {}
        self._byte_symbol: list[str] = []
        self._symbol_byte: dict[str, int] = {}
        self._cache: dict[str, tuple[int, ...]] = {}

    def __getstate__(self) -> dict:
        # Pickles (e.g. to grain worker processes) carry only the settings; the
        # vocabulary is reloaded lazily on the other side and the lock recreated.
        return {"vocab_path": self.vocab_path, "cache_size": self.cache_size}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    # ----------------------------------------------------------------- loading
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def _load(self) -> None:
        path = self.vocab_path
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            raise DataError(f"{path}: BPE vocabulary file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: cannot read gzip'd UTF-8 BPE vocabulary ({e})") from None
        # Line 1 is a version header; CLIP uses the first _NUM_MERGES merges after it.
        merge_lines = lines[1 : 1 + _NUM_MERGES]
        if len(merge_lines) < _NUM_MERGES:
            raise DataError(f"{path}: holds {len(merge_lines)} merges after the header, CLIP needs {_NUM_MERGES}")
        merges = []
        for lineno, line in enumerate(merge_lines, start=2):
            pair = line.split()
            if len(pair) != 2:
                raise DataError(f"{path}: line {lineno}: expected two symbols separated by a space, got {line!r}")
            merges.append((pair[0], pair[1]))

        self._byte_symbol = _byte_symbols()
        self._symbol_byte = {s: b for b, s in enumerate(self._byte_symbol)}
        base = _base_vocab_order(self._byte_symbol)
        vocab = base + [s + _END_OF_WORD for s in base] + [a + b for a, b in merges] + [SOT_TOKEN, EOT_TOKEN]
        self._decoder = vocab
        self._encoder = {token: i for i, token in enumerate(vocab)}
        self._ranks = {pair: rank for rank, pair in enumerate(merges)}
        self._reset_cache()

    def _reset_cache(self) -> None:
        self._cache = {SOT_TOKEN: (SOT_ID,), EOT_TOKEN: (EOT_ID,)}

    # --------------------------------------------------------------------- BPE
    def _bpe(self, piece: str) -> tuple[int, ...]:
        """BPE ids of one pre-tokenizer piece."""
        chars = "".join(self._byte_symbol[b] for b in piece.encode("utf-8"))
        symbols = list(chars[:-1]) + [chars[-1] + _END_OF_WORD]
        ranks = self._ranks
        while len(symbols) > 1:
            best_rank, best = None, None
            for pair in zip(symbols, symbols[1:]):
                rank = ranks.get(pair)
                if rank is not None and (best_rank is None or rank < best_rank):
                    best_rank, best = rank, pair
            if best is None:
                break
            first, second = best
            # Merge every occurrence of the best pair, scanning left to right.
            merged = []
            i, n = 0, len(symbols)
            while i < n:
                if i + 1 < n and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return tuple(self._encoder[s] for s in symbols)

    def _chunk_ids(self, chunk: str) -> tuple[int, ...]:
        """Ids of one space-free chunk of cleaned text (a cache miss).

        No pre-tokenizer match can contain whitespace, so splitting the cleaned
        text at spaces first and caching whole chunks gives the same pieces as
        running the regex over the whole text, without running it on a hit. A
        chunk that is one piece caches its BPE ids under the same key a piece
        would use, so one dict serves both.
        """
        cache = self._cache
        pieces = _PIECE_RE.findall(chunk)
        if len(pieces) == 1 and pieces[0] == chunk:
            ids = self._bpe(chunk)
        else:
            ids = ()
            for piece in pieces:
                piece_ids = cache.get(piece)
                if piece_ids is None:
                    piece_ids = self._bpe(piece)
                    self._remember(piece, piece_ids)
                ids += piece_ids
        self._remember(chunk, ids)
        return ids

    def _remember(self, key: str, ids: tuple[int, ...]) -> None:
        cache = self._cache
        if len(cache) >= self.cache_size:
            # Evict the oldest tenth (dicts keep insertion order); the special
            # tokens are re-seeded so that they always map to their ids.
            for old in list(itertools.islice(cache, max(1, self.cache_size // 10))):
                cache.pop(old, None)
            cache[SOT_TOKEN] = (SOT_ID,)
            cache[EOT_TOKEN] = (EOT_ID,)
        cache[key] = ids

    def _encode_clean(self, cleaned: str) -> list[int]:
        cache = self._cache
        ids: list[int] = []
        if not cleaned:
            return ids
        for chunk in cleaned.split(" "):
            hit = cache.get(chunk)
            ids.extend(hit if hit is not None else self._chunk_ids(chunk))
        return ids

    # ------------------------------------------------------------------ public
    def encode(self, text: str) -> list[int]:
        """BPE ids of one text, without the start/end tokens and without padding.

        Args:
            text: raw text (cleaned here exactly as CLIP does).

        Returns:
            The token ids.
        """
        if not isinstance(text, str):
            raise TypeError(f"Tokenizer.encode: expected str, got {type(text).__name__}")
        self._ensure_loaded()
        return self._encode_clean(clean_text(text))

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special_tokens: bool = False) -> str:
        """Text of a sequence of ids, as open_clip's ``decode`` writes it.

        Word ends become a trailing space (``"a farm ."`` decodes to ``"a farm . "``).

        Args:
            ids: token ids (a list, or a 1-D array such as one row of ``tokenize``).
            skip_special_tokens: drop the start token and stop at the first end
                token (so zero padding is dropped as well).

        Returns:
            The decoded text; invalid UTF-8 byte runs become U+FFFD.
        """
        self._ensure_loaded()
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        if skip_special_tokens:
            if EOT_ID in ids:
                ids = ids[: ids.index(EOT_ID)]
            ids = [i for i in ids if i != SOT_ID]
        bad = [i for i in ids if not 0 <= i < len(self._decoder)]
        if bad:
            raise ValueError(f"Tokenizer.decode: id {bad[0]} outside the vocabulary [0, {len(self._decoder)})")
        text = "".join(self._decoder[i] for i in ids)
        byte_of = self._symbol_byte
        # Every character of every vocabulary entry ('</w>' and the special
        # tokens included) is one of the 256 byte symbols.
        data = bytes(byte_of[c] for c in text)
        return data.decode("utf-8", errors="replace").replace(_END_OF_WORD, " ")

    def __call__(self, texts: str | Sequence[str], context_length: int | None = DEFAULT_CONTEXT_LENGTH) -> np.ndarray:
        """Token ids of a batch, shaped like ``open_clip.tokenize`` output.

        Args:
            texts: one string or a sequence of strings.
            context_length: row length (77 for every CLIP model; None means 77).

        Returns:
            ``np.ndarray`` of int32, shape ``(len(texts), context_length)``.
        """
        if isinstance(texts, str):
            texts = [texts]
        if context_length is None:
            context_length = DEFAULT_CONTEXT_LENGTH
        if isinstance(context_length, bool) or not isinstance(context_length, (int, np.integer)) or context_length < 1:
            raise ValueError(f"tokenize: context_length must be a positive int, got {context_length!r}")
        context_length = int(context_length)
        self._ensure_loaded()
        rows = []
        body = context_length - 1  # room for SOT + ids before the forced EOT
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"tokenize: texts[{index}] is {type(text).__name__}, expected str")
            row = [SOT_ID]
            row += self._encode_clean(clean_text(text))
            if len(row) >= context_length:
                del row[body:]
            row.append(EOT_ID)
            rows.append(row)
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int32, count=int(lengths.sum()))
        out = np.zeros((len(rows), context_length), dtype=np.int32)
        out[np.arange(context_length) < lengths[:, None]] = flat
        return out


_DEFAULT_TOKENIZER = Tokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = DEFAULT_CONTEXT_LENGTH) -> np.ndarray:
    """Tokenize text(s) for CLIP; ids equal ``open_clip.tokenize`` (as int32).

    Args:
        texts: one string or a sequence of strings.
        context_length: row length (77 for every CLIP model).

    Returns:
        ``np.ndarray`` of int32, shape ``(N, context_length)``: ``[49406] + BPE ids +
        [49407]`` then zeros; rows that do not fit are truncated and end in 49407.
    """
    return _DEFAULT_TOKENIZER(texts, context_length)
