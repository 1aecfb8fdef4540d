"""Reading the matrix products of a program as a backend would get it, without that backend.

`jax.export` lowers a function for any platform ("cpu", "cuda", "tpu") on a CPU-only host; the
StableHLO text then shows each `dot_general` and `convolution` with its operand and result types.
"""
from __future__ import annotations

import dataclasses
import math
import re

import jax

_TYPES = re.compile(r": \(tensor<([^>]*)>, tensor<([^>]*)>\) -> tensor<([^>]*)>")
_CONTRACTING = re.compile(r"contracting_dims = \[([\d, ]*)\]")
_KERNEL_DIMS = re.compile(r"dim_numbers = \[[^\]]*\]x\[([^\]]*)\]")


@dataclasses.dataclass(frozen=True)
class Product:
    kind: str  # "dot" or "conv"
    lhs: str  # operand and result element types: "bf16", "f32", ...
    rhs: str
    out: str
    flops: int  # 2 x multiply-adds


def _shape_and_type(spec: str) -> tuple[tuple[int, ...], str]:
    *dims, dtype = spec.split("x")
    return tuple(int(d) for d in dims), dtype


def _flops(line: str, lhs_shape, rhs_shape, out_shape) -> int:
    if "stablehlo.convolution" in line:
        # Each output element takes one multiply-add per kernel element outside its "o" dimension.
        kernel = [d.strip() for d in _KERNEL_DIMS.search(line).group(1).split(",")]
        return 2 * math.prod(out_shape) * math.prod(rhs_shape) // rhs_shape[kernel.index("o")]
    contracting = _CONTRACTING.search(line)
    dims = contracting.group(1).split(",") if contracting and contracting.group(1) else []
    return 2 * math.prod(out_shape) * math.prod(lhs_shape[int(d)] for d in dims)


def products(fn, *args, platform: str) -> list[Product]:
    """Every matrix product and convolution of `jax.jit(fn)(*args)` lowered for `platform`."""
    text = jax.export.export(jax.jit(fn), platforms=[platform])(*args).mlir_module()
    found = []
    for line in text.splitlines():
        if "stablehlo.dot_general" not in line and "stablehlo.convolution" not in line:
            continue
        lhs, rhs, out = (_shape_and_type(t) for t in _TYPES.search(line).groups())
        kind = "conv" if "stablehlo.convolution" in line else "dot"
        found.append(Product(kind, lhs[1], rhs[1], out[1], _flops(line, lhs[0], rhs[0], out[0])))
    return found
