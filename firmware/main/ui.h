/*
 * The screen (1024x600): a 448x448 drawing canvas with Clear and a Softmax/Raw mode button on the
 * left; on the right the answer (a digit, "unsure", "no digit" or nothing), the 28x28 image the
 * model saw, and a 10-bar chart in the chosen mode.
 */
#pragma once

#include "esp_err.h"
#include "lvgl.h"

#define UI_CANVAS_SIDE 448
#define UI_BRUSH_RADIUS 14   /* stroke width 29 px on 448: MNIST's ~2.5 px strokes on a 20 px box */

/* Build the screen and start the inference task. Call with the display ready (esp_lvgl_port). */
esp_err_t ui_start(lv_display_t *display);
