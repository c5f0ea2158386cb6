"""The firmware configured and compiled as ESP-IDF would, without an ESP-IDF toolchain: kconfgen
(esp-idf-kconfig) on sdkconfig.defaults for ESP-IDF v5.4 and v5.5 (or $IDF_PATH), then every source
compiled with Debian's riscv64-unknown-elf-gcc for rv32imafc/ilp32f with IDF's warnings and -Werror.
A missing tool fails these tests with the command that installs it."""

from __future__ import annotations

import shutil

import firmware_build as fb
import pytest


@pytest.fixture(scope="module")
def checked(tmp_path_factory) -> dict:
    """Configuration and compile errors per ESP-IDF tree (compiled once per session)."""
    out = tmp_path_factory.mktemp("fwbuild")
    return {
        tree.name: (tree, *fb.check_tree(tree, out / tree.name.replace(" ", "_").replace("/", "_")))
        for tree in fb.idf_trees()
    }


@pytest.mark.slow
def test_every_firmware_source_compiles_with_werror(checked):
    assert len(fb.firmware_sources()) >= 7
    for name, (_tree, _config, errors) in checked.items():
        assert not errors, f"{name}:\n" + "\n".join(errors)


@pytest.mark.slow
def test_configuration_selects_rev_below_3_and_360_mhz(checked):
    for name, (tree, config, _errors) in checked.items():
        assert config["CONFIG_IDF_TARGET"] == "esp32p4", name
        assert config["CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ"] == "360", name
        assert config["CONFIG_ESP32P4_REV_MIN_FULL"] == "1", name  # the board's rev 1.x chip boots
        assert int(config["CONFIG_ESP32P4_REV_MAX_FULL"]) < 300, name
        if tuple(int(x) for x in tree.version.split(".")[:2]) >= (5, 5):
            assert config["CONFIG_ESP32P4_SELECTS_REV_LESS_V3"] == "y", name
        assert config["CONFIG_PARTITION_TABLE_CUSTOM_FILENAME"] == "../partitions.csv", name
        assert config["CONFIG_SPIRAM_MODE_HEX"] == "y", name


def test_without_the_rev_lines_esp_idf_5_5_would_drop_the_board(tmp_path, monkeypatch):
    """The two lines matter: ESP-IDF 5.5's defaults alone select rev >= 3 and lose 360 MHz."""
    tree = next((t for t in fb.idf_trees() if t.version.startswith("5.5")), None)
    if tree is None:
        pytest.skip("$IDF_PATH is not ESP-IDF 5.5")  # only with a user's own older ESP-IDF
    fw = tmp_path / "firmware"
    fw.mkdir()
    text = (fb.FIRMWARE / "sdkconfig.defaults").read_text()
    (fw / "sdkconfig.defaults").write_text(
        "\n".join(line for line in text.splitlines() if not line.startswith("CONFIG_ESP32P4_"))
    )
    monkeypatch.setattr(fb, "FIRMWARE", fw)
    config = fb.generate_sdkconfig(tree, tmp_path / "config")
    assert config.get("CONFIG_ESP32P4_SELECTS_REV_LESS_V3") != "y"
    assert config.get("CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ") != "360"


@pytest.mark.slow
def test_the_compile_check_is_not_vacuous(checked, tmp_path):
    """A copy with a wrong field name in a display struct fails the same check."""
    copy = tmp_path / "main"
    shutil.copytree(fb.FW_MAIN, copy)
    board = copy / "board.c"
    text = board.read_text()
    assert ".hsync_back_porch" in text
    board.write_text(text.replace(".hsync_back_porch", ".hsync_back_porch_typo", 1))
    for src in copy.glob("*.c*"):
        if src.name != "board.c":
            src.unlink()
    tree, config, _ = next(iter(checked.values()))
    cmds = fb.compile_commands(tree, tmp_path / "config", config, tmp_path, copy)
    fb.generate_sdkconfig(tree, tmp_path / "config")
    errors = fb.run_compiles([c for c in cmds if c[-1].endswith("board.c")])
    assert errors and "hsync_back_porch_typo" in errors[0], errors


def test_a_missing_tool_names_its_install_command(monkeypatch):
    monkeypatch.setattr(fb, "CC", "riscv64-unknown-elf-gcc-missing")
    with pytest.raises(fb.Mnistp4Error, match="apt-get install"):
        fb.require(fb.CC)


def test_components_are_pinned_exactly_and_the_lock_file_is_kept():
    yml = (fb.FIRMWARE / "main" / "idf_component.yml").read_text()
    for key, folder in fb.COMPONENTS.items():
        version = folder.rsplit("-", 1)[1]
        line = yml.split(f"/{key}:", 1)[1].splitlines()[0]
        assert f'"=={version}"' in line, (key, line)  # the versions compiled against here
    assert "dependencies.lock" not in (fb.FIRMWARE / ".gitignore").read_text()
