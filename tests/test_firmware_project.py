"""The ESP-IDF project's wiring, checked without ESP-IDF: the partition table it builds with is the
one deploy reads, the model partition name agrees everywhere, components are pinned, and every
source file is part of the build."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from mnistp4.stages.deploy.common import MODEL_PARTITION
from mnistp4.stages.deploy.partitions import find_partition, read_partitions

REPO = Path(__file__).resolve().parents[1]
FW = REPO / "firmware"


def sdkconfig() -> dict[str, str]:
    values = {}
    for line in (FW / "sdkconfig.defaults").read_text().splitlines():
        if line.startswith("CONFIG_"):
            key, value = line.split("=", 1)
            values[key] = value.strip('"')
    return values


def test_firmware_builds_with_the_repository_partition_table():
    cfg = sdkconfig()
    assert cfg["CONFIG_PARTITION_TABLE_CUSTOM"] == "y"
    table = (FW / cfg["CONFIG_PARTITION_TABLE_CUSTOM_FILENAME"]).resolve()
    assert table == (REPO / "partitions.csv").resolve()
    offset = int(cfg["CONFIG_PARTITION_TABLE_OFFSET"], 16)
    model = find_partition(read_partitions(table, table_offset=offset), MODEL_PARTITION)
    flash_mb = int(
        next(k for k in cfg if k.startswith("CONFIG_ESPTOOLPY_FLASHSIZE_"))
        .removeprefix("CONFIG_ESPTOOLPY_FLASHSIZE_")
        .removesuffix("MB")
    )
    assert model.end <= flash_mb * 1024 * 1024
    assert cfg["CONFIG_SPIRAM"] == "y" and cfg["CONFIG_IDF_TARGET"] == "esp32p4"


def test_model_partition_name_agrees_everywhere():
    cmake = (FW / "main" / "CMakeLists.txt").read_text()
    assert re.search(rf'esptool_py_flash_to_partition\(flash "{MODEL_PARTITION}"', cmake)
    cpp = (FW / "main" / "inference.cpp").read_text()
    assert f'MODEL_PARTITION = "{MODEL_PARTITION}"' in cpp
    assert "fbs::MODEL_LOCATION_IN_FLASH_PARTITION" in cpp


def test_components_are_pinned():
    deps = {}
    for line in (FW / "main" / "idf_component.yml").read_text().splitlines():
        m = re.match(r'\s+([\w/.-]+):\s*"([^"]+)"', line)
        if m:
            deps[m.group(1)] = m.group(2)
    for name in (
        "espressif/esp-dl",
        "lvgl/lvgl",
        "espressif/esp_lvgl_port",
        "espressif/esp_lcd_ek79007",
        "espressif/esp_lcd_touch_gt911",
    ):
        assert re.fullmatch(r"==\d+\.\d+\.\d+", deps[name]), (name, deps.get(name))
    assert tuple(map(int, deps["espressif/esp-dl"][2:].split("."))) >= (3, 3, 6)  # 3.3.0-3.3.5 assert
    assert deps["idf"] == ">=5.4"


def test_every_source_is_built():
    cmake = (FW / "main" / "CMakeLists.txt").read_text()
    srcs = set(re.findall(r'"([\w/]+\.(?:c|cpp))"', cmake))
    on_disk = {str(p.relative_to(FW / "main")) for p in (FW / "main").rglob("*") if p.suffix in (".c", ".cpp")}
    assert srcs == on_disk


def _defines(*files: str) -> dict[str, int]:
    values = {"DC_SIZE": 28}
    for name in files:
        for key, expr in re.findall(r"^#define (\w+) ([^/\n]+)", (FW / "main" / name).read_text(), re.M):
            try:
                values[key] = int(eval(expr.strip(), {}, dict(values)))  # the layout's integer arithmetic
            except (NameError, SyntaxError):
                pass
    return values


def test_screen_layout_boxes_do_not_overlap():
    """The status text (where "model invalid: ..." appears) is not drawn under the preview or the bars."""
    d = _defines("board.h", "ui.h", "preview.h", "ui.c")
    boxes = {
        "canvas": (40, 40, d["UI_CANVAS_SIDE"], d["UI_CANVAS_SIDE"]),
        "status": (d["STATUS_X"], d["STATUS_Y"], d["STATUS_W"], d["STATUS_H"]),
        "preview": (d["PREVIEW_X"], d["PREVIEW_Y"], d["PREVIEW_SIDE"], d["PREVIEW_SIDE"]),
        "bars": (d["BARS_X"], d["BARS_Y"], 10 * d["BAR_W"] + 9 * d["BAR_GAP"], d["BAR_H"]),
    }
    for name, (x, y, w, h) in boxes.items():
        assert x >= 0 and y >= 0 and x + w <= d["BOARD_LCD_H_RES"] and y + h <= d["BOARD_LCD_V_RES"], name
    names = list(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ax, ay, aw, ah = boxes[a]
            bx, by, bw, bh = boxes[b]
            assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, (a, b)


def _cmake_version_check(version: str | None) -> subprocess.CompletedProcess:
    cmake = shutil.which("cmake")
    assert cmake, "cmake is needed for the firmware's version check: apt-get install -y cmake (.ci/run does)"
    defines = []
    if version is not None:
        major, minor, patch = version.split(".")
        defines = [f"-DIDF_VERSION_MAJOR={major}", f"-DIDF_VERSION_MINOR={minor}", f"-DIDF_VERSION_PATCH={patch}"]
    script = FW / "cmake" / "idf_version.cmake"
    return subprocess.run([cmake, *defines, "-P", str(script)], capture_output=True, text=True, timeout=60)


def test_the_build_names_the_esp_idf_versions_it_is_checked_against():
    """The project's CMake says plainly which ESP-IDF versions it was checked against: an older one
    stops the build with what to install, a newer one (6.x, say) builds with a warning. The versions
    it names are the ones the CI compile check uses."""
    import firmware_build as fb

    cmake = (FW / "cmake" / "idf_version.cmake").read_text()
    checked = re.search(r'set\(MNISTP4_IDF_CHECKED "([^"]+)"\)', cmake).group(1).split(";")
    assert checked == sorted({".".join(t.version.split(".")[:2]) for t in fb.idf_trees()})
    assert "cmake/idf_version.cmake" in (FW / "CMakeLists.txt").read_text()

    for version in ("5.4.0", "5.4.2", "5.5.5"):
        done = _cmake_version_check(version)
        assert done.returncode == 0 and "Warning" not in done.stderr, (version, done.stderr)
    old = _cmake_version_check("5.3.2")
    assert old.returncode != 0 and "needs ESP-IDF 5.4 or 5.5" in old.stderr and "5.3.2" in old.stderr
    for newer in ("5.6.0", "6.0.1"):
        done = _cmake_version_check(newer)
        flat = " ".join(done.stderr.split())
        assert done.returncode == 0 and "CMake Warning" in flat and f"this is ESP-IDF {newer}" in flat, done.stderr
