#include "preview.h"

#include <string.h>

#include "driver/ppa.h"
#include "esp_heap_caps.h"
#include "esp_log.h"

static const char *TAG = "preview";
/* PPA output buffers must be aligned to the L2 cache line (128 B, sdkconfig.defaults) */
#define PREVIEW_ALIGN 128

static ppa_client_handle_t s_srm;
static uint16_t *s_in;    /* 28x28 RGB565 */
static uint16_t *s_out;   /* 112x112 RGB565, cache-line aligned */
static const size_t OUT_BYTES = PREVIEW_SIDE * PREVIEW_SIDE * sizeof(uint16_t);

esp_err_t preview_init(void)
{
    s_in = heap_caps_aligned_calloc(PREVIEW_ALIGN, 1, DC_PIXELS * sizeof(uint16_t), MALLOC_CAP_SPIRAM);
    s_out = heap_caps_aligned_calloc(PREVIEW_ALIGN, 1, OUT_BYTES, MALLOC_CAP_SPIRAM);
    if (!s_in || !s_out) {
        return ESP_ERR_NO_MEM;
    }
    const ppa_client_config_t cfg = {.oper_type = PPA_OPERATION_SRM, .max_pending_trans_num = 1};
    esp_err_t err = ppa_register_client(&cfg, &s_srm);
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "PPA unavailable (%s): the CPU scales the preview", esp_err_to_name(err));
        s_srm = NULL;
    }
    return ESP_OK;
}

static void cpu_scale(uint16_t *out)
{
    for (int y = 0; y < PREVIEW_SIDE; y++) {
        for (int x = 0; x < PREVIEW_SIDE; x++) {
            out[y * PREVIEW_SIDE + x] = s_in[(y / PREVIEW_SCALE) * DC_SIZE + x / PREVIEW_SCALE];
        }
    }
}

void preview_render(const uint8_t image[DC_PIXELS], uint16_t *out)
{
    for (int p = 0; p < DC_PIXELS; p++) {
        uint16_t g = image[p];
        s_in[p] = (uint16_t)(((g >> 3) << 11) | ((g >> 2) << 5) | (g >> 3));
    }
    if (s_srm) {
        const ppa_srm_oper_config_t op = {
            .in = {.buffer = s_in, .pic_w = DC_SIZE, .pic_h = DC_SIZE, .block_w = DC_SIZE, .block_h = DC_SIZE,
                   .block_offset_x = 0, .block_offset_y = 0, .srm_cm = PPA_SRM_COLOR_MODE_RGB565},
            .out = {.buffer = s_out, .buffer_size = OUT_BYTES, .pic_w = PREVIEW_SIDE, .pic_h = PREVIEW_SIDE,
                    .block_offset_x = 0, .block_offset_y = 0, .srm_cm = PPA_SRM_COLOR_MODE_RGB565},
            .rotation_angle = PPA_SRM_ROTATION_ANGLE_0,
            .scale_x = PREVIEW_SCALE,
            .scale_y = PREVIEW_SCALE,
            .mirror_x = false,
            .mirror_y = false,
            .rgb_swap = false,
            .byte_swap = false,
            .mode = PPA_TRANS_MODE_BLOCKING,
        };
        if (ppa_do_scale_rotate_mirror(s_srm, &op) == ESP_OK) {
            memcpy(out, s_out, OUT_BYTES);
            return;
        }
        ESP_LOGW(TAG, "PPA scaling failed: the CPU scales the preview");
    }
    cpu_scale(out);
}
