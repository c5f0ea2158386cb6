"""The one .espdl validator (plugins/quantize/espdl_validate.py) and the firmware's C model check
(firmware/main/core/espdl_check.c) share one rule list: the generated C header is what the rule list
renders, and both report the same rule on good files and on truncated, random, wrong-mode, oversize
and bit-flipped ones. The validator raises InputError naming the file, never another exception."""

from __future__ import annotations

import struct
import subprocess

import firmware_rules
import numpy as np
import pytest
from fwcore import Core

from mnistp4.errors import InputError
from mnistp4.stages.quantize.espdl_validate import (
    HEADER_BYTES,
    KNOWN_OPS,
    RULE,
    RULES,
    EspdlInvalid,
    check_shared,
    validate_espdl,
)

PARTITION = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def core(fw_core) -> Core:
    return fw_core


@pytest.fixture(scope="module", params=[8, 16])
def good(request, random_espdl) -> bytes:
    return random_espdl(request.param).read_bytes()


def _with_header(data: bytes, mode=None, length=None) -> bytes:
    head = bytearray(data[:HEADER_BYTES])
    if mode is not None:
        struct.pack_into("<I", head, 4, mode)
    if length is not None:
        struct.pack_into("<I", head, 8, length)
    return bytes(head) + data[HEADER_BYTES:]


def mutants(data: bytes, seed: int = 0) -> list[tuple[str, bytes]]:
    """Named mutations of a good file: what a bad export, a cut download or a half-written flash gives."""
    rng = np.random.default_rng(seed)
    n = len(data)
    out = [
        ("empty", b""),
        ("8 bytes", data[:8]),
        ("header only", data[:HEADER_BYTES]),
        ("erased flash", b"\xff" * n),
        ("zeros", b"\x00" * n),
        ("onnx", b"\x08\x07\x12\x07pytorch" + data[12:]),
        ("mode 1", _with_header(data, mode=1)),
        ("mode 2", _with_header(data, mode=2)),
        ("mode -1", _with_header(data, mode=0xFFFFFFFF)),
        ("length 0", _with_header(data, length=0)),
        ("length +1", _with_header(data, length=n - HEADER_BYTES + 1)),
        ("length huge", _with_header(data, length=0xFFFFFFF0)),
        ("random after magic", data[:4] + rng.integers(0, 256, n - 4, dtype=np.uint8).tobytes()),
        ("random after header", data[:HEADER_BYTES] + rng.integers(0, 256, n - 16, dtype=np.uint8).tobytes()),
        ("unknown op", data.replace(b"\x04\x00\x00\x00Conv\x00", b"\x04\x00\x00\x00Cxnv\x00", 1)),
        ("op case", data.replace(b"\x04\x00\x00\x00Gemm\x00", b"\x04\x00\x00\x00GEMM\x00", 1)),
    ]
    for cut in (17, 20, 64, n // 3, n // 2, n - 100, n - 1):
        out.append((f"truncated to {cut}", data[:cut]))
        out.append((f"truncated to {cut}, length fixed", _with_header(data[:cut], length=max(cut - 16, 0))))
    for _ in range(160):  # bit flips anywhere after the header
        flipped = bytearray(data)
        pos = int(rng.integers(HEADER_BYTES, n))
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        out.append((f"bit flip {pos}", bytes(flipped)))
    for _ in range(40):  # a run of garbage, as an interrupted write leaves
        junk = bytearray(data)
        start = int(rng.integers(HEADER_BYTES, n - 64))
        size = int(rng.integers(4, 64))
        junk[start : start + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        out.append((f"garbage at {start}", bytes(junk)))
    return out


def test_c_header_is_rendered_from_the_rule_list():
    assert firmware_rules.HEADER_PATH.read_text() == firmware_rules.render_header(), (
        "run python bench/firmware_rules.py"
    )


def test_c_check_uses_the_same_codes_and_ops(core):
    text = firmware_rules.HEADER_PATH.read_text()
    for rule in RULES:
        assert (f"ER_{rule.name.upper()} = {rule.code}," in text) == rule.shared, rule
    assert all(f'"{op}",' in text for op in KNOWN_OPS)
    assert core.check_model(b"").rule == RULE["header"].code


def test_good_files_pass_both(core, good, tmp_path):
    shared = check_shared(good, len(good), PARTITION)
    report = core.check_model(good, len(good), PARTITION)
    assert shared.rule.name == "ok" and report.rule == 0, (shared, report.message)
    assert (report.input_exponent, report.output_exponent) == (shared.input_exponent, shared.output_exponent)
    assert report.input_bits == int(shared.input_type.removeprefix("int"))
    path = tmp_path / "good.espdl"
    path.write_bytes(good)
    model = validate_espdl(path, PARTITION)
    assert model.input_shape == [1, 28, 28, 1]
    # in flash, bytes after the model are left-overs: the board check takes the partition as available
    assert core.check_model(good + b"\xff" * 100, len(good) + 100, PARTITION).rule == 0


def test_mutated_files_give_the_same_rule_in_c_and_python(core, good, tmp_path):
    seen = set()
    for name, data in mutants(good, seed=len(good)):
        shared = check_shared(data, len(data), PARTITION)
        report = core.check_model(data, len(data), PARTITION)
        assert report.rule == shared.rule.code, (name, shared, report.message)
        seen.add(shared.rule.name)
        path = tmp_path / "bad.espdl"
        path.write_bytes(data)
        try:
            validate_espdl(path, PARTITION)
        except EspdlInvalid as e:
            assert str(path) in str(e) and "mnistp4" in str(e) and isinstance(e, InputError), (name, e)
            assert shared.rule.name == "ok" or e.rule == shared.rule, (name, e)
        else:
            assert shared.rule.name == "ok", name
    assert {"header", "magic", "mode", "length", "structure", "op"} <= seen, seen


def test_oversize_for_the_partition(core, good, tmp_path):
    small = len(good) - 1
    assert check_shared(good, len(good), small).rule.name == "partition"
    assert core.check_model(good, len(good), small).rule == RULE["partition"].code
    path = tmp_path / "m.espdl"
    path.write_bytes(good)
    with pytest.raises(EspdlInvalid, match="partition larger"):
        validate_espdl(path, small)


def test_host_only_rules(good, tmp_path):
    from mnistp4.stages.quantize.espdl_reader import read_espdl

    path = tmp_path / "m.espdl"
    path.write_bytes(good + b"\x00" * 8)
    with pytest.raises(EspdlInvalid) as e:
        validate_espdl(path)
    assert e.value.rule.name == "trailing"
    path.write_bytes(good)
    model = read_espdl(path)
    expected = model.test_outputs[model.outputs[0].name].data.tobytes()
    assert good.count(expected) == 1
    at = good.index(expected)
    wrong = bytearray(good)
    wrong[at] ^= 0x01  # the stored expected output no longer matches
    path.write_bytes(bytes(wrong))
    with pytest.raises(EspdlInvalid) as e:
        validate_espdl(path)
    assert e.value.rule.name == "test_values", e.value


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        validate_espdl(tmp_path / "nope.espdl")


def random_models(seed: int, count: int, good: bytes) -> list[bytes]:
    """Arbitrary buffers, many with a valid header so the FlatBuffers walk is what gets exercised."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        body = rng.integers(0, 256, int(rng.integers(0, 600)), dtype=np.uint8).tobytes()
        if i % 3 == 0:
            out.append(body)
        else:
            head = struct.pack("<4sIII", b"EDL2", 0, len(body), 0)
            if i % 3 == 2:  # a real model's first bytes, the rest random
                body = good[HEADER_BYTES : HEADER_BYTES + len(body) // 2] + body[len(body) // 2 :]
            out.append(head + body)
    return out


@pytest.mark.slow
def test_c_check_under_sanitizers_agrees_on_mutants_and_random_buffers(random_espdl, tmp_path):
    """The C check built with address and undefined-behaviour sanitizers, each model in an exactly
    sized buffer: no read outside it, no undefined behaviour, the same rule as Python (Int8 and Int16
    files and their mutants, random buffers, in one run)."""
    from fwcore import build_fwhost, check_models_request

    cmd = build_fwhost(tmp_path, "sanitized")
    cases = []
    for bits in (8, 16):
        good = random_espdl(bits).read_bytes()
        cases += [(data, len(data), PARTITION) for _name, data in mutants(good, seed=7)]
        cases += [(data, len(data), 0) for data in random_models(len(good), 200, good)]
        cases += [(good, len(good) + 4096, PARTITION), (good[:100], 1 << 20, 0)]  # flash: more than read
    proc = subprocess.run(cmd, input=check_models_request(cases), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == len(cases)
    for (data, available, partition), line in zip(cases, lines):
        expected = check_shared(data, available, partition or None).rule
        assert line == f"check rule={expected.code} name={expected.name}", (line, expected, data[:32])


def test_arbitrary_bytes_give_the_projects_error_only(tmp_path_factory):
    """Fuzzing the validator: any input is valid or an InputError naming the file, never another exception."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    folder = tmp_path_factory.mktemp("fuzz")
    header = st.builds(
        lambda mode, body: struct.pack("<4sIII", b"EDL2", mode, len(body), 0) + body,
        st.sampled_from([0, 0, 0, 1]),
        st.binary(max_size=400),
    )

    @settings(deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=200), header))
    def check(data):
        path = folder / "fuzz.espdl"
        path.write_bytes(data)
        try:
            validate_espdl(path, PARTITION)
        except InputError as e:
            assert str(path) in str(e)

    check()
