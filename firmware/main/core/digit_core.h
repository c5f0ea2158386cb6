/*
 * Portable digit core: drawing canvas -> MNIST-style 28x28 -> the model's Int8/Int16 input, and the
 * model's raw outputs -> bars, digit, confidence and a "no digit / unsure" decision.
 *
 * Plain C11 with no ESP-IDF include: the same files are compiled on the host (gcc -std=c11 -Wall
 * -Wextra -Werror, loaded by the Python tests with ctypes) and in the firmware. The normalization is
 * a port of plugins/digit_normalizer.py (its docstring is the specification); every step uses the
 * same integer arithmetic and rounding rules, so host and board produce identical 28x28 images.
 *
 * Nothing here allocates: callers pass a workspace of dc_workspace_bytes(width, height) bytes.
 */
#ifndef DIGIT_CORE_H
#define DIGIT_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DC_SIZE 28            /* output side, pixels */
#define DC_PIXELS (DC_SIZE * DC_SIZE)
#define DC_BOX 20             /* the long side of the ink box after scaling (MNIST: 20) */
#define DC_CENTRE 14          /* where the centre of mass goes */
#define DC_MIN_CONTRAST 1     /* ink and background means closer than this: no ink */
#define DC_SPECK_MIN_AREA 3   /* components smaller than this are specks */
#define DC_SPECK_FRACTION_DEN 25 /* components smaller than 1/25 of the largest are specks */
#define DC_MAX_PIXELS (8 * 1000 * 1000) /* keeps every integer product inside int64 */
#define DC_CLASSES 10

/* MNIST normalization the model was trained with: x = (pixel / 255 - mean) / std */
#define DC_MEAN 0.1307
#define DC_STD 0.3081

/* Return codes of the normalizers (>= 0: success) */
#define DC_OK_INK 1           /* a digit image was produced */
#define DC_OK_EMPTY 0         /* no ink found: the output is all zeros */
#define DC_ERR_ARG (-1)       /* bad size, stride or NULL pointer */

/* Bytes of workspace the normalizers need for a width x height canvas (0 if the size is invalid). */
size_t dc_workspace_bytes(int width, int height);

/* RGB565 -> grey: 5/6-bit channels widened by bit replication, then (77 R + 150 G + 29 B + 128) >> 8.
 * stride is in pixels. */
void dc_rgb565_to_grey(const uint16_t *src, int width, int height, int stride, uint8_t *dst);

/* extract_ink of the spec: grey (either polarity) -> ink image (white on black, specks removed).
 * grey may not alias ink. Returns DC_OK_INK, DC_OK_EMPTY or DC_ERR_ARG. */
int dc_extract_ink(const uint8_t *grey, int width, int height, int stride, uint8_t *ink, void *work);

/* fit_28 of the spec: ink image -> 28x28 (ink box scaled to fit 20x20 keeping the aspect ratio by
 * area resampling, centre of mass at (14, 14)). Needs dc_workspace_bytes(width, height) bytes. */
int dc_fit_28(const uint8_t *ink, int width, int height, int stride, uint8_t out[DC_PIXELS], void *work);

/* The whole normalization (normalize_digit of the spec) of a grey or an RGB565 canvas. */
int dc_normalize_grey(const uint8_t *grey, int width, int height, int stride, uint8_t out[DC_PIXELS],
                      void *work);
int dc_normalize_rgb565(const uint16_t *rgb, int width, int height, int stride, uint8_t out[DC_PIXELS],
                        void *work);

/* Model input. ESP-DL stores a tensor as q = clip(round_half_even(x * 2^-exponent)) (esp-ppq's rule
 * for the ESP32-P4), with x the float input. Every 28x28 pixel value maps to one q, so a 256-entry
 * table is computed once per model and the input is a table look-up. */
void dc_input_table_int8(int exponent, int8_t table[256]);
void dc_input_table_int16(int exponent, int16_t table[256]);
void dc_quantize_int8(const uint8_t image[DC_PIXELS], const int8_t table[256], int8_t *out);
void dc_quantize_int16(const uint8_t image[DC_PIXELS], const int16_t table[256], int16_t *out);

/* Model output: q * 2^exponent -> float logits. */
void dc_dequantize_int8(const int8_t *q, int n, int exponent, float *out);
void dc_dequantize_int16(const int16_t *q, int n, int exponent, float *out);

/* exp(x) from float adds and multiplies only (no libm): x = k ln2 + r, |r| <= ln2/2, exp(r) by its
 * Taylor polynomial to r^7, times 2^k built from its bits. Every IEEE-754 machine gives the same bits
 * (compiled with -ffp-contract=off), so the board, the host and the Python reference agree exactly.
 * 0 below x = -87; x above 88 counts as 88. The relative error bound is measured by the tests. */
float dc_expf(float x);

/* Bars of the two display modes, each value in [0, 1]:
 * softmax: probabilities (numerically stable, they sum to 1; dc_expf, so identical everywhere);
 * raw: the raw outputs scaled directly so the largest positive output fills its bar (negative outputs
 * show as empty bars; all outputs <= 0 give all-empty bars). */
void dc_softmax(const float *logits, int n, float *probs);
void dc_raw_bars(const float *logits, int n, float *bars);

/* Index of the largest value (the first one on ties); -1 if n <= 0. */
int dc_argmax(const float *values, int n);

/* What the screen shows. */
enum dc_state {
    DC_STATE_EMPTY = 0,    /* nothing (or almost nothing) drawn */
    DC_STATE_DIGIT = 1,    /* a confident digit */
    DC_STATE_UNSURE = 2,   /* the model hesitates: no confident bar */
    DC_STATE_SCRIBBLE = 3, /* ink that does not look like a digit (a filled blob, a scrawl) */
};

typedef struct {
    int min_ink_pixels;      /* fewer lit 28x28 pixels than this: empty */
    int max_fill_permille;   /* more of the ink box saturated (>= 128) than this: scribble */
    float min_confidence;    /* top probability below this: unsure */
    float min_margin;        /* top minus second probability below this: unsure */
} dc_thresholds_t;

typedef struct {
    int state;               /* enum dc_state */
    int digit;               /* argmax of the probabilities, -1 when empty */
    float confidence;        /* top probability */
    float margin;            /* top minus second probability */
    int ink_pixels;          /* lit pixels of the 28x28 image */
    int fill_permille;       /* saturated share of the ink box */
} dc_decision_t;

/* The defaults used by the firmware (documented in docs/firmware.md). */
dc_thresholds_t dc_default_thresholds(void);

/* Ink statistics of a 28x28 image (no model needed): lit pixels and fill of the ink box. */
void dc_ink_stats(const uint8_t image[DC_PIXELS], int *ink_pixels, int *fill_permille);

/* Decide what to show from the 28x28 image and the probabilities (probs may be NULL when the image is
 * empty: the model is not run then). */
dc_decision_t dc_decide(const uint8_t image[DC_PIXELS], const float *probs, int n,
                        const dc_thresholds_t *thresholds);

/* The two labels of the result: the big answer ("7", "?", "" for an empty canvas, "-" without a
 * model) and the status line. model_error is shown when model_ready is 0. Percentages are rounded
 * in integers, so every C library prints the same text. */
void dc_screen_text(const dc_decision_t *d, int model_ready, const char *model_error, char *answer,
                    size_t answer_len, char *status, size_t status_len);

/* Drawing: a round-capped stroke of the given radius from (x0, y0) to (x1, y1), clipped to the
 * canvas; pixels within radius of the segment take max(pixel, value). stride in pixels. */
void dc_draw_segment(uint8_t *canvas, int width, int height, int stride, int x0, int y0, int x1, int y1,
                     int radius, uint8_t value);

#ifdef __cplusplus
}
#endif

#endif /* DIGIT_CORE_H */
