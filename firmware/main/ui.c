#include "ui.h"

#include <stdio.h>
#include <string.h>

#include "digit_core.h"
#include "esp_heap_caps.h"
#include "esp_log.h"
#include "esp_lvgl_port.h"
#include "esp_timer.h"
#include "inference.h"
#include "preview.h"

static const char *TAG = "ui";

#define BAR_W 36
#define BAR_H 220
#define BAR_GAP 12
/* Right-hand column (x 540..1020): answer and status on the left, the preview on the right, the bars
 * below; the status box ends before the preview starts, so a long message is never hidden. */
#define ANSWER_X 540
#define ANSWER_Y 40
#define STATUS_X 540
#define STATUS_Y 110
#define STATUS_W 320
#define STATUS_H 130
#define PREVIEW_X 880
#define PREVIEW_Y 40
#define BARS_X 540
#define BARS_Y 250
#define REQUEST_PERIOD_US 120000   /* while a stroke goes on, re-run at most every 120 ms */

typedef enum { MODE_SOFTMAX = 0, MODE_RAW = 1 } bar_mode_t;

static uint8_t *s_grey;            /* the drawing, read by the inference task (white ink on black) */
static uint16_t *s_pixels;         /* the same drawing as RGB565 for the LVGL canvas */
static uint16_t *s_preview_pixels;
static lv_obj_t *s_canvas, *s_preview, *s_digit, *s_status, *s_mode_label;
static lv_obj_t *s_bars[DC_CLASSES];
static bar_mode_t s_mode = MODE_SOFTMAX;
static inference_result_t s_last;  /* for redrawing the bars when the mode changes */
static lv_point_t s_prev;
static int64_t s_last_request_us;

static inline uint16_t grey_to_rgb565(uint8_t g)
{
    return (uint16_t)(((g >> 3) << 11) | ((g >> 2) << 5) | (g >> 3));
}

/* ---- drawing ---------------------------------------------------------------------------------- */

static void mirror_region(int x0, int y0, int x1, int y1)
{
    x0 = x0 < 0 ? 0 : x0;
    y0 = y0 < 0 ? 0 : y0;
    x1 = x1 >= UI_CANVAS_SIDE ? UI_CANVAS_SIDE - 1 : x1;
    y1 = y1 >= UI_CANVAS_SIDE ? UI_CANVAS_SIDE - 1 : y1;
    for (int y = y0; y <= y1; y++) {
        for (int x = x0; x <= x1; x++) {
            s_pixels[y * UI_CANVAS_SIDE + x] = grey_to_rgb565(s_grey[y * UI_CANVAS_SIDE + x]);
        }
    }
}

static void stroke(lv_point_t a, lv_point_t b)
{
    dc_draw_segment(s_grey, UI_CANVAS_SIDE, UI_CANVAS_SIDE, UI_CANVAS_SIDE, a.x, a.y, b.x, b.y, UI_BRUSH_RADIUS,
                    255);
    int r = UI_BRUSH_RADIUS;
    mirror_region(LV_MIN(a.x, b.x) - r, LV_MIN(a.y, b.y) - r, LV_MAX(a.x, b.x) + r, LV_MAX(a.y, b.y) + r);
    lv_obj_invalidate(s_canvas);
}

static lv_point_t canvas_point(void)
{
    lv_point_t p;
    lv_area_t area;
    lv_indev_get_point(lv_indev_active(), &p);
    lv_obj_get_coords(s_canvas, &area);
    p.x -= area.x1;
    p.y -= area.y1;
    return p;
}

static void canvas_event(lv_event_t *e)
{
    lv_event_code_t code = lv_event_get_code(e);
    if (code == LV_EVENT_PRESSED) {
        s_prev = canvas_point();
        stroke(s_prev, s_prev);
    } else if (code == LV_EVENT_PRESSING) {
        lv_point_t p = canvas_point();
        stroke(s_prev, p);
        s_prev = p;
        int64_t now = esp_timer_get_time();
        if (now - s_last_request_us > REQUEST_PERIOD_US) {
            s_last_request_us = now;
            inference_request();
        }
    } else if (code == LV_EVENT_RELEASED || code == LV_EVENT_PRESS_LOST) {
        inference_request();
    }
}

static void clear_event(lv_event_t *e)
{
    (void)e;
    memset(s_grey, 0, UI_CANVAS_SIDE * UI_CANVAS_SIDE);
    memset(s_pixels, 0, UI_CANVAS_SIDE * UI_CANVAS_SIDE * sizeof(uint16_t));
    lv_obj_invalidate(s_canvas);
    inference_request();
}

/* ---- result --------------------------------------------------------------------------------------- */

static void show_bars(void)
{
    const float *values = s_mode == MODE_SOFTMAX ? s_last.probs : s_last.raw;
    int winner = s_last.decision.state == DC_STATE_DIGIT ? s_last.decision.digit : -1;
    /* a scribble shows no bars at all: the model's answer to it means nothing */
    int shown = s_last.ran && s_last.decision.state != DC_STATE_SCRIBBLE;
    for (int i = 0; i < DC_CLASSES; i++) {
        int v = shown ? (int)(values[i] * 100.0f + 0.5f) : 0;
        lv_bar_set_value(s_bars[i], v, LV_ANIM_OFF);
        lv_color_t c = i == winner ? lv_palette_main(LV_PALETTE_GREEN) : lv_palette_main(LV_PALETTE_BLUE_GREY);
        lv_obj_set_style_bg_color(s_bars[i], c, LV_PART_INDICATOR);
    }
    lv_label_set_text(s_mode_label, s_mode == MODE_SOFTMAX ? "Softmax" : "Raw");
}

static void show_result(void)
{
    const model_info_t *info = inference_model_info();
    const dc_decision_t *d = &s_last.decision;
    char answer[8], status[sizeof(info->error) + 64];
    /* the same text the host program prints (core/digit_core.h), plus the timings */
    dc_screen_text(d, info->ready, info->error, answer, sizeof(answer), status, sizeof(status));
    if (info->ready && d->state == DC_STATE_DIGIT) {
        size_t len = strlen(status);
        snprintf(status + len, sizeof(status) - len, "\nnormalize %d ms, model %d ms",
                 (int)(s_last.normalize_us / 1000), (int)(s_last.infer_us / 1000));
    }
    lv_label_set_text(s_digit, answer);
    lv_label_set_text(s_status, status);
    preview_render(s_last.image, s_preview_pixels);
    lv_obj_invalidate(s_preview);
    show_bars();
}

/* Called by the inference task. */
static void on_result(const inference_result_t *result, void *user)
{
    (void)user;
    if (!lvgl_port_lock(0)) {
        return;
    }
    s_last = *result;
    show_result();
    lvgl_port_unlock();
}

static void mode_event(lv_event_t *e)
{
    (void)e;
    s_mode = s_mode == MODE_SOFTMAX ? MODE_RAW : MODE_SOFTMAX;
    show_bars();
}

/* ---- layout ----------------------------------------------------------------------------------- */

static lv_obj_t *button(lv_obj_t *parent, const char *text, lv_event_cb_t cb, lv_obj_t **label_out)
{
    lv_obj_t *btn = lv_button_create(parent);
    lv_obj_set_size(btn, 200, 56);
    lv_obj_add_event_cb(btn, cb, LV_EVENT_CLICKED, NULL);
    lv_obj_t *label = lv_label_create(btn);
    lv_label_set_text(label, text);
    lv_obj_set_style_text_font(label, &lv_font_montserrat_20, 0);
    lv_obj_center(label);
    if (label_out) {
        *label_out = label;
    }
    return btn;
}

static void build_screen(void)
{
    lv_obj_t *scr = lv_screen_active();
    lv_obj_set_style_bg_color(scr, lv_color_hex(0x202428), 0);

    s_canvas = lv_canvas_create(scr);
    lv_canvas_set_buffer(s_canvas, s_pixels, UI_CANVAS_SIDE, UI_CANVAS_SIDE, LV_COLOR_FORMAT_RGB565);
    lv_obj_set_pos(s_canvas, 40, 40);
    lv_obj_add_flag(s_canvas, LV_OBJ_FLAG_CLICKABLE);
    lv_obj_add_event_cb(s_canvas, canvas_event, LV_EVENT_ALL, NULL);

    lv_obj_t *clear = button(scr, "Clear", clear_event, NULL);
    lv_obj_set_pos(clear, 40, 510);
    lv_obj_t *mode = button(scr, "Softmax", mode_event, &s_mode_label);
    lv_obj_set_pos(mode, 288, 510);

    s_digit = lv_label_create(scr);
    lv_obj_set_style_text_font(s_digit, &lv_font_montserrat_48, 0);
    lv_obj_set_style_text_color(s_digit, lv_color_white(), 0);
    lv_obj_set_pos(s_digit, ANSWER_X, ANSWER_Y);
    lv_label_set_text(s_digit, "");

    s_status = lv_label_create(scr);
    lv_obj_set_style_text_font(s_status, &lv_font_montserrat_20, 0);
    lv_obj_set_style_text_color(s_status, lv_color_hex(0xC8CCD0), 0);
    lv_obj_set_size(s_status, STATUS_W, STATUS_H);
    lv_label_set_long_mode(s_status, LV_LABEL_LONG_WRAP);
    lv_obj_set_pos(s_status, STATUS_X, STATUS_Y);
    lv_label_set_text(s_status, "loading the model...");

    s_preview = lv_canvas_create(scr);
    lv_canvas_set_buffer(s_preview, s_preview_pixels, PREVIEW_SIDE, PREVIEW_SIDE, LV_COLOR_FORMAT_RGB565);
    lv_obj_set_pos(s_preview, PREVIEW_X, PREVIEW_Y);

    int x0 = BARS_X;
    for (int i = 0; i < DC_CLASSES; i++) {
        lv_obj_t *bar = lv_bar_create(scr);
        lv_obj_set_size(bar, BAR_W, BAR_H);      /* taller than wide: a vertical bar */
        lv_bar_set_range(bar, 0, 100);
        lv_obj_set_pos(bar, x0 + i * (BAR_W + BAR_GAP), BARS_Y);
        s_bars[i] = bar;
        lv_obj_t *label = lv_label_create(scr);
        char text[4];
        snprintf(text, sizeof(text), "%d", i);
        lv_label_set_text(label, text);
        lv_obj_set_style_text_font(label, &lv_font_montserrat_28, 0);
        lv_obj_set_style_text_color(label, lv_color_white(), 0);
        lv_obj_set_pos(label, x0 + i * (BAR_W + BAR_GAP) + 8, BARS_Y + BAR_H + 8);
    }
}

esp_err_t ui_start(lv_display_t *display)
{
    (void)display;
    size_t n = UI_CANVAS_SIDE * UI_CANVAS_SIDE;
    s_grey = heap_caps_calloc(n, 1, MALLOC_CAP_SPIRAM);
    s_pixels = heap_caps_calloc(n, sizeof(uint16_t), MALLOC_CAP_SPIRAM);
    s_preview_pixels = heap_caps_calloc(PREVIEW_SIDE * PREVIEW_SIDE, sizeof(uint16_t), MALLOC_CAP_SPIRAM);
    if (!s_grey || !s_pixels || !s_preview_pixels) {
        return ESP_ERR_NO_MEM;
    }
    esp_err_t err = preview_init();
    if (err != ESP_OK) {
        return err;
    }
    if (!lvgl_port_lock(0)) {
        return ESP_ERR_TIMEOUT;
    }
    build_screen();
    lvgl_port_unlock();
    err = inference_start(s_grey, UI_CANVAS_SIDE, UI_CANVAS_SIDE, on_result, NULL);
    if (err == ESP_OK) {
        inference_request();   /* shows the model state (or the reason there is none) */
    }
    ESP_LOGI(TAG, "screen ready");
    return err;
}
