"""ESP-IDF partition tables (``partitions.csv``): parse and resolve offsets exactly as ESP-IDF's
``gen_esp32part.py`` (v5.x) does, so the deploy plugin writes the model where the firmware finds it.

Rules (ESP-IDF v5): lines are ``name, type, subtype, offset, size, flags``; ``#`` starts a comment
line; missing trailing fields are empty. Numbers are decimal or ``0x`` hex with an optional ``K``/``M``
suffix (x1024, x1024²). A blank offset continues after the previous partition, rounded up to the
type's alignment (app 0x10000, data 0x1000); the first partition starts right after the table
(table offset, default 0x8000, + 0x1000). A negative size means "up to this end address". An
explicit offset below the previous end is an overlap error; an explicit offset that is not aligned
is an error. Names must be unique and at most 16 bytes. Every partition must end inside the
board's flash (``flash_size``, 16 MB on the CrowPanel: ``CONFIG_ESPTOOLPY_FLASHSIZE_16MB``).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from mnistp4.errors import InputError

#: default CONFIG_PARTITION_TABLE_OFFSET; the table itself takes one 4 KiB sector
TABLE_OFFSET = 0x8000
TABLE_SIZE = 0x1000

APP, DATA = 0x00, 0x01
TYPES = {"app": APP, "data": DATA}
SUBTYPES = {
    APP: {"factory": 0x00, "test": 0x20, **{f"ota_{i}": 0x10 + i for i in range(16)}},
    DATA: {
        "ota": 0x00,
        "phy": 0x01,
        "nvs": 0x02,
        "coredump": 0x03,
        "nvs_keys": 0x04,
        "efuse": 0x05,
        "undefined": 0x06,
        "esphttpd": 0x80,
        "fat": 0x81,
        "spiffs": 0x82,
        "littlefs": 0x83,
    },
}
ALIGNMENT = {APP: 0x10000, DATA: 0x1000}
#: flash size of the CrowPanel Advance 7" ESP32-P4 (firmware/sdkconfig.defaults)
FLASH_SIZE = 16 * 1024 * 1024
FLAGS = ("encrypted", "readonly")


@dataclass(frozen=True)
class Partition:
    name: str
    type: int
    subtype: int
    offset: int
    size: int
    flags: tuple[str, ...] = ()
    line: int = 0

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def type_name(self) -> str:
        return next((k for k, v in TYPES.items() if v == self.type), f"0x{self.type:02x}")

    @property
    def subtype_name(self) -> str:
        names = SUBTYPES.get(self.type, {})
        return next((k for k, v in names.items() if v == self.subtype), f"0x{self.subtype:02x}")


def _alignment(ptype: int) -> int:
    return ALIGNMENT.get(ptype, ALIGNMENT[DATA])


def _parse_int(text: str, keywords: dict[str, int] | None = None) -> int:
    t = text.strip()
    try:
        for suffix, mult in (("k", 1024), ("m", 1024 * 1024)):
            if t.lower().endswith(suffix):
                return _parse_int(t[:-1]) * mult
        return int(t, 0)
    except ValueError:
        if keywords and t.lower() in keywords:
            return keywords[t.lower()]
        known = f"; known: {', '.join(keywords)}" if keywords else ""
        raise ValueError(f"{text!r} is not a number{' or a known name' if keywords else ''}{known}") from None


def parse_partitions(
    text: str, *, table_offset: int = TABLE_OFFSET, source: str = "partitions.csv", flash_size: int | None = FLASH_SIZE
) -> list[Partition]:
    """Partitions of a CSV text with every offset and size resolved (ESP-IDF rules, see module doc),
    each checked to end inside ``flash_size`` bytes (None: not checked)."""
    rows = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in (line + ",,,,").split(",")]
        where = f"{source} line {line_no}"
        try:
            name = fields[0]
            if not name:
                raise ValueError("the name is empty")
            if len(name.encode()) > 16:
                raise ValueError(f"name {name!r} is longer than 16 bytes")
            if not fields[1]:
                raise ValueError("the type field is empty")
            ptype = _parse_int(fields[1], TYPES)
            if fields[2]:
                subtype = _parse_int(fields[2], SUBTYPES.get(ptype, {}))
            elif ptype == APP:
                raise ValueError("an app partition needs a subtype")
            else:
                subtype = SUBTYPES[DATA]["undefined"]
            for what, value in (("type", ptype), ("subtype", subtype)):
                if not 0 <= value <= 0xFF:  # one byte each in the binary table
                    raise ValueError(f"{what} {value:#x} is out of range 0x0..0xff")
            offset = _parse_int(fields[3]) if fields[3] else None
            if not fields[4]:
                raise ValueError("the size field is empty")
            size = _parse_int(fields[4])
            flags = tuple(f for f in fields[5].split(":") if f)
            bad = [f for f in flags if f not in FLAGS]
            if bad:
                raise ValueError(f"unknown flag {bad[0]!r} (known: {', '.join(FLAGS)})")
        except ValueError as e:
            raise InputError(f"{where}: {e}") from None
        rows.append([name, ptype, subtype, offset, size, flags, line_no])

    if not rows:
        raise InputError(f"{source}: no partitions (every line is blank or a comment)")
    result: list[Partition] = []
    last_end = table_offset + TABLE_SIZE
    for name, ptype, subtype, offset, size, flags, line_no in rows:
        where = f"{source} line {line_no} ({name})"
        if offset is not None and offset < last_end:
            what = "the end of the partition table" if not result else f"the end of {result[-1].name!r}"
            raise InputError(f"{where}: offset 0x{offset:x} overlaps {what} at 0x{last_end:x}")
        if offset is None:
            align = _alignment(ptype)
            offset = -(-last_end // align) * align
        elif offset % _alignment(ptype):
            raise InputError(f"{where}: offset 0x{offset:x} is not aligned to 0x{_alignment(ptype):x}")
        if size < 0:
            size = -size - offset
        if size <= 0:
            raise InputError(f"{where}: size must be positive")
        if offset + size > 0xFFFFFFFF:  # 32-bit offset and size in the binary table
            raise InputError(f"{where}: ends at 0x{offset + size:x}, past the 32-bit flash address range")
        if flash_size is not None and offset + size > flash_size:
            raise InputError(
                f"{where}: ends at 0x{offset + size:x}, past the end of the board's "
                f"{_megabytes(flash_size)} flash (0x{flash_size:x}); make it or a partition before it "
                f"smaller"
            )
        result.append(Partition(name, ptype, subtype, offset, size, flags, line_no))
        last_end = offset + size

    names = [p.name for p in result]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise InputError(f"{source}: partition names must be unique, repeated: {', '.join(dups)}")
    return result


def _megabytes(n: int) -> str:
    return f"{n / 2**20:g} MB"


def read_partitions(
    path: str | Path, *, table_offset: int = TABLE_OFFSET, flash_size: int | None = FLASH_SIZE
) -> list[Partition]:
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"partition table {path} does not exist; the project ships partitions.csv at its root "
            f"(config key `partitions`)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text CSV partition table") from None
    return parse_partitions(text, table_offset=table_offset, source=str(path), flash_size=flash_size)


def find_partition(partitions: list[Partition], name: str, source: str = "partition table") -> Partition:
    for p in partitions:
        if p.name == name:
            return p
    raise InputError(f"{source} has no partition named {name!r} (it has: {', '.join(p.name for p in partitions)})")


def format_table(partitions: list[Partition]) -> str:
    """The resolved table as aligned text (name, type, subtype, offset, size, end)."""
    lines = [f"{'name':<16} {'type':<5} {'subtype':<10} {'offset':>10} {'size':>10} {'end':>10}"]
    for p in partitions:
        lines.append(f"{p.name:<16} {p.type_name:<5} {p.subtype_name:<10} {p.offset:#10x} {p.size:#10x} {p.end:#10x}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Binary form (what ESP-IDF flashes at the table offset, 0x8000): 32-byte entries
# ``<2sBBLL16sL`` (magic AA 50, type, subtype, offset, size, name, flags), then an MD5 entry
# (EB EB, 14 x FF, md5 of the entries), padded with FF to 0xC00 bytes.
# --------------------------------------------------------------------------------------------

ENTRY = struct.Struct("<2sBBLL16sL")
ENTRY_MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb" + b"\xff" * 14
TABLE_BYTES = 0xC00
FLAG_BITS = {"encrypted": 1 << 0, "readonly": 1 << 1}


def to_binary(partitions: list[Partition]) -> bytes:
    """The table as ESP-IDF writes it (with its MD5 entry), 0xC00 bytes."""
    body = b"".join(
        ENTRY.pack(
            ENTRY_MAGIC, p.type, p.subtype, p.offset, p.size, p.name.encode(), sum(FLAG_BITS[f] for f in p.flags)
        )
        for p in partitions
    )
    out = body + MD5_MAGIC + hashlib.md5(body).digest()
    if len(out) > TABLE_BYTES:
        raise InputError(f"the partition table has {len(partitions)} entries, more than fit in 0x{TABLE_BYTES:x} bytes")
    return out + b"\xff" * (TABLE_BYTES - len(out))


def parse_binary(data: bytes, source: str = "partition table") -> list[Partition]:
    """Entries of a binary table (as read back from a board); the MD5 entry is checked."""
    parts: list[Partition] = []
    body = b""
    for pos in range(0, len(data) - len(data) % ENTRY.size, ENTRY.size):
        chunk = data[pos : pos + ENTRY.size]
        if chunk == b"\xff" * ENTRY.size:
            return parts
        if chunk[:2] == MD5_MAGIC[:2]:
            if chunk[16:] != hashlib.md5(body).digest():
                raise InputError(f"{source}: the MD5 of the entries does not match: the table is corrupt")
            continue
        magic, ptype, subtype, offset, size, name, flags = ENTRY.unpack(chunk)
        if magic != ENTRY_MAGIC:
            raise InputError(
                f"{source}: no partition table here (entry {pos // ENTRY.size} starts with "
                f"{magic.hex()}, expected aa50); is the firmware flashed?"
            )
        body += chunk
        names = tuple(f for f, bit in FLAG_BITS.items() if flags & bit)
        parts.append(Partition(name.rstrip(b"\x00").decode(errors="replace"), ptype, subtype, offset, size, names))
    raise InputError(f"{source}: the partition table has no end marker")
