/*
 * Inference in its own FreeRTOS task: when the drawing changes, the canvas is copied, normalized
 * by the portable core (core/digit_core.h), quantized with the model's own input exponent and run
 * by ESP-DL from the `model` flash partition; the result goes to a callback (the UI).
 */
#pragma once

#include <stdint.h>

#include "digit_core.h"
#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int ready;               /* the model is loaded and its input/output are supported */
    char error[224];         /* why not, for the screen */
    int input_bits;          /* 8 or 16 */
    int input_exponent;
    int output_exponent;
} model_info_t;

typedef struct {
    uint8_t image[DC_PIXELS];    /* the normalized 28x28 the model saw */
    int ran;                     /* the model ran (not for an empty canvas or without a model) */
    float logits[DC_CLASSES];
    float probs[DC_CLASSES];     /* softmax mode */
    float raw[DC_CLASSES];       /* raw mode: outputs scaled directly */
    dc_decision_t decision;
    int64_t normalize_us;
    int64_t infer_us;
} inference_result_t;

typedef void (*inference_done_cb)(const inference_result_t *result, void *user);

/* Start the task. canvas is the UI's grey drawing buffer (width x height, white ink on black); it
 * is read under the LVGL lock, as the UI writes it from LVGL events. */
esp_err_t inference_start(const uint8_t *canvas, int width, int height, inference_done_cb done, void *user);

/* The drawing changed: run once more (requests made while a run is busy collapse into one). */
void inference_request(void);

const model_info_t *inference_model_info(void);

#ifdef __cplusplus
}
#endif
