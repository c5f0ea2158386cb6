/*
 * "What the model sees": the normalized 28x28 digit shown 4x larger (112x112 RGB565), scaled by the
 * ESP32-P4's pixel-processing accelerator (PPA, scale-rotate-mirror) instead of the CPU.
 */
#pragma once

#include <stdint.h>

#include "digit_core.h"
#include "esp_err.h"

#define PREVIEW_SCALE 4
#define PREVIEW_SIDE (DC_SIZE * PREVIEW_SCALE)

esp_err_t preview_init(void);

/* Render image (white ink on black) into out (PREVIEW_SIDE^2 RGB565 pixels). Uses the PPA; if the
 * PPA is unavailable the CPU repeats pixels instead. */
void preview_render(const uint8_t image[DC_PIXELS], uint16_t *out);
