"""Image files for the reading tests (test_sheets_batch.py, test_sheets_realistic.py)."""

from __future__ import annotations

import struct
import zlib


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (grey, 8-bit) and that holds no pixel data:
    all a reader sees before decoding, so "enormous" (or a decompression bomb: the same header and a
    few kB of compressed zeros) without the memory or the time to make one."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    iend = b"IEND"
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr) - 4)
        + ihdr
        + struct.pack(">I", zlib.crc32(ihdr))
        + struct.pack(">I", 0)
        + iend
        + struct.pack(">I", zlib.crc32(iend))
    )
