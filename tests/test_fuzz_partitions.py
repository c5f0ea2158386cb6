"""Property tests of ``partitions.csv``: tables written in any of ESP-IDF's number forms resolve and
survive the binary form (CSV -> binary -> entries); any text, and any binary table, gives
partitions or :class:`InputError`, never another exception."""

from __future__ import annotations

import string

from hypothesis import example, given
from hypothesis import strategies as st

from mnistp4.errors import InputError
from mnistp4.stages.deploy.partitions import (
    ALIGNMENT,
    APP,
    DATA,
    FLASH_SIZE,
    SUBTYPES,
    TABLE_BYTES,
    TABLE_OFFSET,
    TABLE_SIZE,
    parse_binary,
    parse_partitions,
    to_binary,
)

TYPE_NAMES = {APP: "app", DATA: "data"}


def number(value: int, form: int) -> str:
    """``value`` as ESP-IDF writes numbers: hex, decimal, K or M (when it divides evenly)."""
    if form == 2 and value % 1024 == 0:
        return f"{value // 1024}K"
    if form == 3 and value % (1024 * 1024) == 0:
        return f"{value // (1024 * 1024)}M"
    return hex(value) if form == 0 else str(value)


@st.composite
def tables(draw):
    """A valid table: unique names, known types and subtypes, every offset blank or explicit and
    aligned (at or after the previous end), sizes in any number form, optional flags.
    Returns the CSV text and the (name, type, subtype, offset, size, flags) each row resolves to."""
    names = draw(
        st.lists(
            st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=16),
            min_size=1,
            max_size=8,
            unique=True,
        )
    )
    end = TABLE_OFFSET + TABLE_SIZE
    lines, expected = ["# Name, Type, SubType, Offset, Size, Flags"], []
    for name in names:
        ptype = draw(st.sampled_from([APP, DATA]))
        sub_name = draw(st.sampled_from(sorted(SUBTYPES[ptype])))
        align = ALIGNMENT[ptype]
        aligned_end = -(-end // align) * align
        offset = aligned_end + align * draw(st.integers(0, 3))
        explicit = draw(st.booleans())
        if not explicit:
            offset = aligned_end
        size = draw(st.integers(1, 64)) * draw(st.sampled_from([0x1000, 1024, 1]))
        flags = draw(st.sampled_from(["", "encrypted", "readonly", "encrypted:readonly"]))
        form = draw(st.integers(0, 3))
        off_text = number(offset, draw(st.integers(0, 3))) if explicit else ""
        lines.append(f"{name}, {TYPE_NAMES[ptype]}, {sub_name}, {off_text}, {number(size, form)}, {flags}")
        expected.append((name, ptype, SUBTYPES[ptype][sub_name], offset, size, tuple(f for f in flags.split(":") if f)))
        end = offset + size
    return "\n".join(lines) + "\n", expected


@given(tables())
def test_written_tables_resolve_and_survive_the_binary_form(table):
    text, expected = table
    parts = parse_partitions(text)
    assert [(p.name, p.type, p.subtype, p.offset, p.size, p.flags) for p in parts] == expected
    binary = to_binary(parts)
    assert len(binary) == TABLE_BYTES
    back = parse_binary(binary)
    assert [(p.name, p.type, p.subtype, p.offset, p.size, p.flags) for p in back] == expected


cell = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["app", "data", "nvs", "factory", "0x10000", "3M", "1K", "-0x1000", "0xffffffffff", "0x1ff", "300", "readonly"]
    ),
)


@given(st.text(max_size=300))
@example("")
@example("# only a comment\n")
@example("nvs, data, nvs, , kkkk")
def test_any_text_gives_partitions_or_input_error(text):
    try:
        parse_partitions(text)
    except InputError:
        pass


@given(st.lists(st.lists(cell, max_size=7), min_size=1, max_size=6))
@example([["big", "data", "nvs", "", "0x100000000"]])  # a size past 32 bits
@example([["far", "data", "nvs", "0x100000000", "0x1000"]])  # an offset past 32 bits
@example([["type", "0x1ff", "0", "", "0x1000"]])  # a type past one byte
@example([["sub", "data", "300", "", "0x1000"]])  # a subtype past one byte
def test_parsed_tables_have_a_binary_form(rows):
    """Whatever parse_partitions accepts fits the binary entry (a byte for type and subtype, 32 bits
    for offset and size); everything else is an InputError."""
    text = "\n".join(", ".join(r) for r in rows)
    for flash_size in (FLASH_SIZE, None):  # None: no board, no flash-size check
        try:
            parts = parse_partitions(text, flash_size=flash_size)
        except InputError:
            continue
        try:
            assert [p.name for p in parse_binary(to_binary(parts))] == [p.name for p in parts]
        except InputError as e:
            assert "more than fit" in str(e)


@given(st.binary(max_size=TABLE_BYTES + 64))
@example(b"")
@example(b"\xaa\x50" + b"\x00" * 30)
@example(b"\xeb\xeb" + b"\xff" * 30)
def test_any_binary_table_gives_partitions_or_input_error(data):
    try:
        parse_binary(data)
    except InputError:
        pass


@given(tables(), st.integers(0, 4000), st.integers(0, 255))
def test_damaged_binary_table_gives_partitions_or_input_error(table, at, value):
    """One byte of a real binary table changed: the MD5 entry catches changed entries."""
    parts = parse_partitions(table[0])
    data = bytearray(to_binary(parts))
    at %= len(data)
    changed = data[at] != value
    data[at] = value
    try:
        back = parse_binary(bytes(data))
    except InputError:
        return
    if changed and at < 32 * len(parts):  # inside an entry: only a change the MD5 entry covers is caught
        raise AssertionError(f"a changed byte {at} inside the entries parsed as {back}")
