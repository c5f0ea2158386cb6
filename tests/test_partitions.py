"""partitions.csv resolution against hand-checked tables (ESP-IDF v5 rules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnistp4.errors import InputError
from mnistp4.stages.deploy.partitions import find_partition, parse_binary, parse_partitions, read_partitions, to_binary

REPO = Path(__file__).resolve().parents[1]


def table(parts):
    return [(p.name, p.offset, p.size) for p in parts]


def test_shipped_table_resolves_as_hand_checked():
    parts = read_partitions(REPO / "partitions.csv")
    assert table(parts) == [
        ("nvs", 0x9000, 0x6000),
        ("phy_init", 0xF000, 0x1000),
        ("factory", 0x10000, 0x600000),
        ("model", 0x610000, 0x200000),
    ]
    model = find_partition(parts, "model")
    assert model.type_name == "data" and model.subtype_name == "undefined"
    assert model.end <= 16 * 1024 * 1024  # the CrowPanel's 16 MB flash


def test_article_style_table_with_blank_offsets():
    # nvs, phy, factory app and a model data partition, every offset left blank
    text = """# Name, Type, SubType, Offset, Size, Flags
nvs,      data, nvs,     ,        0x6000,
phy_init, data, phy,     ,        0x1000,
factory,  app,  factory, ,        3M,
model,    data, spiffs,  ,        1M,
"""
    assert table(parse_partitions(text)) == [
        ("nvs", 0x9000, 0x6000),
        ("phy_init", 0xF000, 0x1000),
        ("factory", 0x10000, 0x300000),
        ("model", 0x310000, 0x100000),
    ]


def test_elecrow_ota_table():
    text = """nvs,      data, nvs,     ,        0x4000,
otadata,  data, ota,     ,        0x2000,
phy_init, data, phy,     ,        0x1000,
factory,  app,  factory,  ,       0x3F0000,
ota_0,    app,  ota_0,   ,        0x3F0000,
ota_1,    app,  ota_1,   ,        0x3F0000,
#audio,    data, spiffs,  ,        0x3F0000,
"""
    parts = parse_partitions(text)
    assert table(parts) == [
        ("nvs", 0x9000, 0x4000),
        ("otadata", 0xD000, 0x2000),
        ("phy_init", 0xF000, 0x1000),
        ("factory", 0x10000, 0x3F0000),
        ("ota_0", 0x400000, 0x3F0000),
        ("ota_1", 0x7F0000, 0x3F0000),
    ]
    assert parts[4].subtype == 0x10 and parts[5].subtype == 0x11


def test_alignment_padding_and_k_suffix():
    # explicit app offset, a K-sized app, then blank data (4 KiB aligned) and a blank app (64 KiB aligned)
    text = """nvs, data, nvs, , 0x5800
factory, app, factory, 0x010000, 3000K
model, data, spiffs, , 5000K
extra, data, 0x40, , 100
app2, app, ota_0, , 64K
"""
    assert table(parse_partitions(text)) == [
        ("nvs", 0x9000, 0x5800),
        ("factory", 0x10000, 3000 * 1024),  # ends at 0x2FE000
        ("model", 0x2FE000, 5000 * 1024),  # 0x2FE000 + 0x4E2000 ends at 0x7E0000
        ("extra", 0x7E0000, 100),  # ends at 0x7E0064
        ("app2", 0x7F0000, 0x10000),  # 0x7E0064 rounded up to 0x10000
    ]


def test_table_offset_moves_first_partition():
    assert parse_partitions("nvs, data, nvs, , 0x6000", table_offset=0xA000)[0].offset == 0xB000


def test_negative_size_means_end_address():
    parts = parse_partitions("nvs, data, nvs, , 0x6000\nstore, data, fat, , -0x20000")
    assert table(parts)[1] == ("store", 0xF000, 0x20000 - 0xF000)


@pytest.mark.parametrize(
    "text, message",
    [
        ("nvs, data, nvs, 0x8000, 0x6000", "overlaps the end of the partition table"),
        ("nvs, data, nvs, , 0x6000\nphy, data, phy, 0xA000, 0x1000", "overlaps the end of 'nvs'"),
        ("factory, app, factory, 0x18000, 1M", "not aligned to 0x10000"),
        ("nvs, data, nvs, , ", "size field is empty"),
        ("nvs, , nvs, , 0x1000", "type field is empty"),
        ("factory, app, , , 1M", "app partition needs a subtype"),
        ("nvs, data, nvsx, , 0x1000", "'nvsx' is not a number"),
        ("nvs, data, nvs, , 0x1000, secret", "unknown flag 'secret'"),
        ("a, data, nvs, , 0x1000\na, data, phy, , 0x1000", "repeated: a"),
        ("# only a comment\n", "no partitions"),
    ],
)
def test_bad_tables_name_the_problem(text, message):
    with pytest.raises(InputError, match=message):
        parse_partitions(text, source="t.csv")


def test_error_names_file_and_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("# comment\nnvs, data, nvs, , 0x6000\nfactory, app, factory, 0x18000, 1M\n")
    with pytest.raises(InputError, match=r"bad\.csv line 3 \(factory\)"):
        read_partitions(p)
    with pytest.raises(InputError, match="does not exist"):
        read_partitions(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="no partition named 'model'"):
        find_partition(parse_partitions("nvs, data, nvs, , 0x6000"), "model")


def test_binary_table_layout_and_round_trip():
    parts = read_partitions(REPO / "partitions.csv")
    data = to_binary(parts)
    assert len(data) == 0xC00
    # hand-checked first entry: magic AA 50, data (01), nvs (02), offset 0x9000, size 0x6000, "nvs"
    assert data[:32] == bytes.fromhex("aa5001020090000000600000") + b"nvs" + b"\0" * 13 + b"\0" * 4
    assert data[4 * 32 : 4 * 32 + 16] == b"\xeb\xeb" + b"\xff" * 14  # the MD5 entry
    assert data[5 * 32 :] == b"\xff" * (0xC00 - 5 * 32)
    assert [(p.name, p.type, p.subtype, p.offset, p.size) for p in parse_binary(data)] == [
        (p.name, p.type, p.subtype, p.offset, p.size) for p in parts
    ]
    corrupt = bytearray(data)
    corrupt[10] ^= 0x01  # flip a bit of nvs' size
    with pytest.raises(InputError, match="MD5"):
        parse_binary(bytes(corrupt))
    with pytest.raises(InputError, match="no end marker"):
        parse_binary(data[: 3 * 32])
