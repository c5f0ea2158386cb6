"""The firmware's configuration and compile check without an ESP-IDF toolchain.

* :func:`generate_sdkconfig` runs ESP-IDF's own ``kconfgen`` (PyPI ``esp-idf-kconfig``) on
  ``firmware/sdkconfig.defaults`` and the Kconfig files of an ESP-IDF tree, as ``idf.py`` does.
* :func:`compile_firmware` compiles every firmware source with Debian's ``riscv64-unknown-elf-gcc``
  for the ESP32-P4's base ISA (``rv32imafc``, ``ilp32f``), ESP-IDF's warning flags and ``-Werror``,
  ``-fsyntax-only``, against the headers of ESP-IDF and the pinned components.

The headers come from ``../shared/esp-sdk`` (offline snapshot of ESP-IDF v5.4 and v5.5.5 for esp32p4
and of the components, see its README) or, when ``IDF_PATH`` is set, from that ESP-IDF. What this
cannot show: PIE/Xesp code (Debian's GCC lacks those extensions), linking, flashing, the board.

    python bench/firmware_build.py     # both ESP-IDF versions, prints what it checked
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mnistp4.errors import Mnistp4Error

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware"
FW_MAIN = FIRMWARE / "main"
SDK = Path(os.environ.get("MNISTP4_ESP_SDK", REPO.parent / "shared" / "esp-sdk"))
CC = "riscv64-unknown-elf-gcc"
INSTALL_HINT = (
    "apt-get install --no-install-recommends gcc-riscv64-unknown-elf libnewlib-dev "
    "libstdc++-arm-none-eabi-dev (Debian; see .ci/run) and pip install esp-idf-kconfig"
)
NEWLIB = Path("/usr/include/newlib")
NEWLIB_CXX = NEWLIB / "c++" / "12.2.1"
COMPONENTS = {
    "lvgl": "lvgl-9.2.2",
    "esp_lvgl_port": "esp_lvgl_port-2.6.3",
    "esp-dl": "esp-dl-3.3.9",
    "esp_lcd_ek79007": "esp_lcd_ek79007-1.0.4",
    "esp_lcd_touch": "esp_lcd_touch-1.2.1",
    "esp_lcd_touch_gt911": "esp_lcd_touch_gt911-1.1.3",
}
ARCH = ["-march=rv32imafc_zicsr_zifencei", "-mabi=ilp32f"]
WARNINGS = [
    "-Wall",
    "-Werror=all",
    "-Wno-error=unused-function",
    "-Wno-error=unused-variable",
    "-Wno-error=unused-but-set-variable",
    "-Wno-error=deprecated-declarations",
    "-Wextra",
    "-Wno-error=extra",
    "-Wno-unused-parameter",
    "-Wno-sign-compare",
    "-Wno-enum-conversion",
]
C_FLAGS = ["-std=gnu17", "-Wno-old-style-declaration"]
CXX_FLAGS = ["-std=gnu++2b", "-fno-exceptions", "-fno-rtti"]
DEFINES = [
    "ESP_PLATFORM",
    "_GNU_SOURCE",
    "_GLIBCXX_USE_POSIX_SEMAPHORE",
    "_GLIBCXX_HAVE_POSIX_SEMAPHORE",
    "_POSIX_READER_WRITER_LOCKS",
    "SOC_MMU_PAGE_SIZE=CONFIG_MMU_PAGE_SIZE",
    "SOC_XTAL_FREQ_MHZ=CONFIG_XTAL_FREQ",
    "LV_CONF_INCLUDE_SIMPLE",
    'MBEDTLS_CONFIG_FILE="mbedtls/esp_config.h"',
]


@dataclass
class IdfTree:
    name: str  # "v5.4", "v5.5.5", or the version of $IDF_PATH
    root: Path
    version: str  # "5.4.0"
    components: Path  # folder holding the managed components (COMPONENTS names)


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise Mnistp4Error(f"{tool} is not installed: {INSTALL_HINT}")
    return path


def _idf_version(root: Path) -> str:
    text = (root / "components" / "esp_common" / "include" / "esp_idf_version.h").read_text()
    parts = [re.search(rf"#define ESP_IDF_VERSION_{k}\s+(\d+)", text).group(1) for k in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(parts)


def idf_trees() -> list[IdfTree]:
    """The ESP-IDF trees to check: ``$IDF_PATH`` when set, else the snapshot's v5.4 and v5.5."""
    components = SDK / "components"
    if os.environ.get("IDF_PATH"):
        root = Path(os.environ["IDF_PATH"])
        managed = FIRMWARE / "managed_components"
        return [IdfTree(f"IDF_PATH {root}", root, _idf_version(root), managed if managed.is_dir() else components)]
    if not SDK.is_dir():
        raise Mnistp4Error(f"no ESP-IDF headers: {SDK} is missing and IDF_PATH is not set")
    trees = []
    for name in ("esp-idf-v5.4", "esp-idf-v5.5"):
        root = SDK / name
        trees.append(IdfTree(name, root, _idf_version(root), components))
    return trees


def _component_dir(tree: IdfTree, key: str) -> Path:
    pinned = tree.components / COMPONENTS[key]
    if pinned.is_dir():
        return pinned
    for prefix in (f"espressif__{key}", f"lvgl__{key}", key):  # idf.py's managed_components names
        if (tree.components / prefix).is_dir():
            return tree.components / prefix
    raise Mnistp4Error(f"component {key} not found under {tree.components}")


def generate_sdkconfig(tree: IdfTree, out_dir: Path) -> dict[str, str]:
    """kconfgen on firmware/sdkconfig.defaults -> out_dir/sdkconfig.h; returns the CONFIG_ values."""
    try:
        import kconfgen  # noqa: F401
    except ImportError:
        raise Mnistp4Error(f"kconfgen is not installed: {INSTALL_HINT}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    comps = sorted((tree.root / "components").iterdir())
    kconfigs = [str(c / "Kconfig") for c in comps if (c / "Kconfig").is_file()]
    kconfigs += [str(_component_dir(tree, k) / "Kconfig") for k in ("lvgl", "esp_lvgl_port", "esp-dl", "esp_lcd_touch")]
    projbuild = [str(c / "Kconfig.projbuild") for c in comps if (c / "Kconfig.projbuild").is_file()]
    renames = [str(p) for c in comps for p in (c / "sdkconfig.rename", c / "sdkconfig.rename.esp32p4") if p.is_file()]
    src_file, projbuild_file = out_dir / "kconfigs.in", out_dir / "kconfigs_projbuild.in"
    src_file.write_text("".join(f'source "{k}"\n' for k in kconfigs))
    projbuild_file.write_text("".join(f'source "{k}"\n' for k in projbuild))
    env = {
        "COMPONENT_KCONFIGS": ";".join(kconfigs),
        "COMPONENT_KCONFIGS_PROJBUILD": ";".join(projbuild),
        "COMPONENT_SDKCONFIG_RENAMES": ";".join(renames),
        "IDF_TARGET": "esp32p4",
        "IDF_TOOLCHAIN": "gcc",
        "IDF_VERSION": tree.version,
        "IDF_ENV_FPGA": "",
        "IDF_PATH": str(tree.root),
        "COMPONENT_KCONFIGS_SOURCE_FILE": str(src_file),
        "COMPONENT_KCONFIGS_PROJBUILD_SOURCE_FILE": str(projbuild_file),
    }
    (out_dir / "config.env").write_text(json.dumps(env))
    sdkconfig = out_dir / "sdkconfig"
    sdkconfig.unlink(missing_ok=True)  # from the defaults alone
    cmd = [
        sys.executable,
        "-m",
        "kconfgen",
        "--list-separator=semicolon",
        "--kconfig",
        str(tree.root / "Kconfig"),
        "--sdkconfig-rename",
        str(tree.root / "sdkconfig.rename"),
        "--config",
        str(sdkconfig),
        "--defaults",
        str(FIRMWARE / "sdkconfig.defaults"),
        "--env-file",
        str(out_dir / "config.env"),
        "--env",
        "IDF_TARGET=esp32p4",
        "--env",
        "IDF_TOOLCHAIN=gcc",
        "--env",
        "IDF_ENV_FPGA=",
        "--env",
        f"IDF_INIT_VERSION={tree.version}",
        "--env",
        "IDF_MINIMAL_BUILD=n",
        "--output",
        "header",
        str(out_dir / "sdkconfig.h"),
        "--output",
        "config",
        str(sdkconfig),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "IDF_PATH": str(tree.root)})
    if proc.returncode != 0:
        raise Mnistp4Error(f"kconfgen failed for {tree.name}:\n{shlex.join(cmd)}\n{proc.stderr[-3000:]}")
    values = {}
    for line in sdkconfig.read_text().splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value.strip('"')
    return values


def _newlib_shim(tree: IdfTree, out_dir: Path) -> Path:
    """IDF's newlib platform_include without the `_global_impure_ptr` declaration that conflicts with
    Debian 12's newlib 3.3 headers (newlib 4.3 dropped it; see the snapshot's README)."""
    shim = out_dir / "platform_include"
    if not shim.is_dir():
        shutil.copytree(tree.root / "components" / "newlib" / "platform_include", shim)
        reent = shim / "sys" / "reent.h"
        reent.write_text(
            "\n".join(
                line
                for line in reent.read_text().splitlines()
                if "extern struct _reent * _global_impure_ptr;" not in line
            )
            + "\n"
        )
    return shim


def include_dirs(tree: IdfTree, config: dict[str, str], out_dir: Path) -> list[Path]:
    """ESP-IDF's include order for the firmware's `main` component (the snapshot's README)."""
    idf = tree.root / "components"
    v55 = tuple(int(x) for x in tree.version.split(".")[:2]) >= (5, 5)
    if not v55:
        register = "register"
    else:
        register = "register/hw_ver1" if config.get("CONFIG_ESP32P4_SELECTS_REV_LESS_V3") == "y" else "register/hw_ver3"
    rel = [
        "freertos/config/include",
        "freertos/config/include/freertos",
        "freertos/config/riscv/include",
        "freertos/FreeRTOS-Kernel/include",
        "freertos/FreeRTOS-Kernel/portable/riscv/include",
        "freertos/FreeRTOS-Kernel/portable/riscv/include/freertos",
        "freertos/esp_additions/include",
        "esp_hw_support/include",
        "esp_hw_support/include/soc",
        "esp_hw_support/include/soc/esp32p4",
        "esp_hw_support/dma/include",
        "esp_hw_support/ldo/include",
        "esp_hw_support/debug_probe/include",
        *(
            [
                "esp_hw_support/mspi_timing_tuning/include",
                "esp_hw_support/mspi_timing_tuning/tuning_scheme_impl/include",
                "esp_hw_support/power_supply/include",
            ]
            if v55
            else []
        ),
        "esp_hw_support/port/esp32p4",
        "esp_hw_support/port/esp32p4/include",
        "esp_hw_support/port/esp32p4/private_include",
        *(["esp_hw_support/mspi_timing_tuning/port/esp32p4"] if v55 else []),
        "heap/include",
        "log/include",
        "soc/include",
        "soc/esp32p4",
        "soc/esp32p4/include",
        f"soc/esp32p4/{register}",
        "hal/platform_port/include",
        "hal/esp32p4/include",
        "hal/include",
        "esp_rom/include",
        "esp_rom/esp32p4/include",
        "esp_rom/esp32p4/include/esp32p4",
        "esp_rom/esp32p4",
        "esp_common/include",
        "esp_system/include",
        "esp_system/port/soc",
        "esp_system/port/include/riscv",
        "esp_system/port/include/private",
        "riscv/include",
        "lwip/include",
        "lwip/include/apps",
        "lwip/include/apps/sntp",
        "lwip/port/include",
        "lwip/port/freertos/include",
        "lwip/port/esp32xx/include",
        "lwip/port/esp32xx/include/arch",
        "lwip/port/esp32xx/include/sys",
        "esp_lcd/include",
        "esp_lcd/interface",
        "esp_lcd/rgb/include",
        "esp_lcd/dsi/include",
        "driver/deprecated",
        "driver/i2c/include",
        "driver/touch_sensor/include",
        "driver/twai/include",
        "esp_pm/include",
        "esp_ringbuf/include",
        "esp_driver_gpio/include",
        "esp_driver_pcnt/include",
        "esp_driver_gptimer/include",
        "esp_driver_spi/include",
        "esp_driver_mcpwm/include",
        "esp_driver_ana_cmpr/include",
        "esp_driver_i2s/include",
        "esp_driver_sdmmc/include",
        "sdmmc/include",
        "esp_driver_sdspi/include",
        "esp_driver_sdio/include",
        "esp_driver_dac/include",
        "esp_driver_rmt/include",
        "esp_driver_tsens/include",
        "esp_driver_sdm/include",
        "esp_driver_i2c/include",
        "esp_driver_uart/include",
        "vfs/include",
        "esp_driver_ledc/include",
        "esp_driver_parlio/include",
        "esp_driver_usb_serial_jtag/include",
        *(["esp_driver_twai/include"] if v55 else []),
        "esp_driver_ppa/include",
        "esp_partition/include",
        "esp_timer/include",
    ]
    lvgl, dl = _component_dir(tree, "lvgl"), _component_dir(tree, "esp-dl")
    dirs = [
        _newlib_shim(tree, out_dir),
        *(idf / r for r in rel),
        lvgl,
        lvgl / "src",
        lvgl.parent,
        _component_dir(tree, "esp_lvgl_port") / "include",
    ]
    dirs += [
        dl / r
        for r in (
            "dl",
            "dl/tool/include",
            "dl/tensor/include",
            "dl/base",
            "dl/base/isa",
            "dl/math/include",
            "dl/model/include",
            "dl/module/include",
            "fbs_loader/include",
            "vision/detect",
            "vision/image",
            "vision/image/isa",
            "vision/recognition",
            "vision/classification",
            "audio/common",
            "audio/speech_features",
            "dl/base/isa/esp32p4",
        )
    ]
    dirs += [
        idf / r
        for r in (
            "esp_mm/include",
            "esp_driver_jpeg/include",
            "mbedtls/port/include",
            "mbedtls/esp_crt_bundle/include",
            "spi_flash/include",
        )
    ]
    dirs += [_component_dir(tree, k) / "include" for k in ("esp_lcd_ek79007", "esp_lcd_touch", "esp_lcd_touch_gt911")]
    return dirs


def firmware_sources(main_dir: Path = FW_MAIN) -> list[Path]:
    return sorted(p for p in main_dir.rglob("*") if p.suffix in (".c", ".cpp"))


def compile_commands(
    tree: IdfTree, config_dir: Path, config: dict[str, str], out_dir: Path, main_dir: Path = FW_MAIN
) -> list[list[str]]:
    cc = require(CC)
    for header in (NEWLIB / "stdio.h", NEWLIB_CXX / "cstdio"):
        if not header.is_file():
            raise Mnistp4Error(f"{header} is missing: {INSTALL_HINT}")
    idf_ver = "v" + tree.version.removesuffix(".0") if tree.version.endswith(".0") else "v" + tree.version
    defines = [*DEFINES, f'IDF_VER="{idf_ver}"']
    if config.get("CONFIG_LV_ATTRIBUTE_FAST_MEM_USE_IRAM") == "y":
        defines.append("LV_ATTRIBUTE_FAST_MEM=IRAM_ATTR")
    incs = [
        f"-I{config_dir}",
        f"-I{main_dir}",
        f"-I{main_dir / 'core'}",
        *(f"-I{d}" for d in include_dirs(tree, config, out_dir)),
    ]
    cmds = []
    for src in firmware_sources(main_dir):
        lang = (
            CXX_FLAGS + ["-isystem", str(NEWLIB_CXX), "-isystem", str(NEWLIB_CXX / "arm-none-eabi")]
            if src.suffix == ".cpp"
            else C_FLAGS
        )
        cmds.append(
            [
                cc if src.suffix == ".c" else cc.replace("gcc", "g++"),
                *ARCH,
                *lang,
                *WARNINGS,
                "-Werror",
                "-ffp-contract=off",
                *(f"-D{d}" for d in defines),
                *incs,
                "-isystem",
                str(NEWLIB),
                "-fsyntax-only",
                str(src),
            ]
        )
    return cmds


def run_compiles(cmds: list[list[str]], jobs: int = 2) -> list[str]:
    """Run the compile commands in parallel; returns the error reports (empty when all pass)."""

    def one(cmd):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        return "" if proc.returncode == 0 else f"{cmd[-1]}:\n{proc.stderr[-4000:]}"

    with ThreadPoolExecutor(jobs) as pool:
        return [r for r in pool.map(one, cmds) if r]


def check_tree(tree: IdfTree, out_dir: Path, main_dir: Path = FW_MAIN, jobs: int = 2) -> tuple[dict, list[str]]:
    """(configuration, compile errors) of the firmware against one ESP-IDF tree."""
    config = generate_sdkconfig(tree, out_dir / "config")
    cmds = compile_commands(tree, out_dir / "config", config, out_dir, main_dir)
    return config, run_compiles(cmds, jobs)


def main() -> int:
    import tempfile

    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for tree in idf_trees():
            config, errors = check_tree(tree, Path(tmp) / tree.name, jobs=os.cpu_count() or 2)
            print(
                f"{tree.name} ({tree.version}): rev<3 {config.get('CONFIG_ESP32P4_SELECTS_REV_LESS_V3', '-')}, "
                f"min rev {config.get('CONFIG_ESP32P4_REV_MIN_FULL')}, "
                f"CPU {config.get('CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ')} MHz, "
                f"{len(firmware_sources())} sources, {len(errors)} failed"
            )
            for e in errors:
                print(e)
            failed += bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
