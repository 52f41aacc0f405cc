"""How the exact nMI counts one pair: the one layout rule of both counting backends (compiled and tensor)."""

from __future__ import annotations

SPARSE_TABLE_CELLS = 1 << 20  # the largest joint table a small image is counted into: 4 MB of int32
DENSE_TABLE_CELLS = 1 << 24  # the largest full joint table read cell by cell: 64 MB of int32 (4,096 levels)


def dense_layout(n: int, levels: int) -> bool:
    """Count N pixels at ``levels`` levels into a full joint table (N >= levels**2 / 4, table not too large)."""
    return 4 * n >= levels * levels and levels * levels <= DENSE_TABLE_CELLS


def layout(n: int, levels: int) -> str:
    """'dense' (a full table read cell by cell), 'sparse' (the table read back pixel by pixel) or 'sorted' (keys
    sorted and counted in runs, for tables too large to hold)."""
    if dense_layout(n, levels):
        return "dense"
    return "sparse" if levels * levels <= SPARSE_TABLE_CELLS else "sorted"
