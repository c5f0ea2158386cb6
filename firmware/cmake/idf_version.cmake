# The ESP-IDF versions this firmware is checked against: CI compiles every source with -Werror
# against the headers and Kconfig of each (bench/firmware_build.py; tests/test_firmware_build.py).
# Included by ../CMakeLists.txt after ESP-IDF's project.cmake, which sets IDF_VERSION_MAJOR/MINOR/PATCH.
set(MNISTP4_IDF_CHECKED "5.4;5.5")

set(_mnistp4_idf "${IDF_VERSION_MAJOR}.${IDF_VERSION_MINOR}")
list(FIND MNISTP4_IDF_CHECKED "${_mnistp4_idf}" _mnistp4_checked)
if(NOT DEFINED IDF_VERSION_MAJOR OR NOT DEFINED IDF_VERSION_MINOR)
  message(WARNING "mnistp4: the ESP-IDF version is unknown here; this firmware is checked against ESP-IDF 5.4 and 5.5")
elseif(_mnistp4_idf VERSION_LESS 5.4)
  message(FATAL_ERROR
    "mnistp4 needs ESP-IDF 5.4 or 5.5; this is ESP-IDF ${_mnistp4_idf}.${IDF_VERSION_PATCH} (IDF_PATH=$ENV{IDF_PATH}). "
    "Older releases are not supported (main/idf_component.yml asks for 5.4 or later): install v5.5 "
    "(https://docs.espressif.com/projects/esp-idf/en/v5.5/esp32p4/get-started/) and run its export.sh.")
elseif(_mnistp4_checked EQUAL -1)
  message(WARNING
    "mnistp4: this firmware is checked against ESP-IDF 5.4 and 5.5; this is ESP-IDF ${_mnistp4_idf}.${IDF_VERSION_PATCH}. "
    "It may build, but nothing was checked against it: if the build fails or the board misbehaves, "
    "use ESP-IDF v5.5.")
endif()
