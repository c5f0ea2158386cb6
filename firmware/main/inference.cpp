#include "inference.h"

#include <cstdio>
#include <cstring>

#include "dl_model_base.hpp"
#include "esp_heap_caps.h"
#include "esp_log.h"
#include "esp_lvgl_port.h"
#include "esp_partition.h"
#include "esp_timer.h"
#include "espdl_check.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"

static const char *TAG = "inference";
static const char *MODEL_PARTITION = "model";

static model_info_t s_info;
static dl::Model *s_model;
static dl::TensorBase *s_input;
static dl::TensorBase *s_output;
static int8_t s_table8[256];
static int16_t s_table16[256];

static const uint8_t *s_canvas;
static int s_width, s_height;
static inference_done_cb s_done;
static void *s_user;
static TaskHandle_t s_task;

static int element_count(dl::TensorBase *t)
{
    int n = 1;
    for (int d : t->get_shape()) {
        n *= d;
    }
    return n;
}

/* ESP-DL asserts on a bad header (an assert reboots the board, in a loop) and follows the file's
 * offsets unchecked, so the partition passes the shared model check (core/espdl_check.h, the rules
 * of the host's .espdl validator) before dl::Model sees it. A refused model leaves the canvas usable
 * and the screen saying why. */
static bool partition_holds_valid_model(void)
{
    const esp_partition_t *part =
        esp_partition_find_first(ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_ANY, MODEL_PARTITION);
    if (!part) {
        snprintf(s_info.error, sizeof(s_info.error),
                 "no '%s' partition: flash a firmware built with partitions.csv", MODEL_PARTITION);
        return false;
    }
    uint8_t head[EC_HEADER_BYTES];
    ec_report_t report;
    if (esp_partition_read(part, 0, head, sizeof(head)) != ESP_OK) {
        snprintf(s_info.error, sizeof(s_info.error), "cannot read the '%s' partition", MODEL_PARTITION);
        return false;
    }
    size_t used = ec_check_header(head, sizeof(head), part->size, part->size, &report);
    if (used) {
        const void *mapped = nullptr;
        esp_partition_mmap_handle_t handle;
        if (esp_partition_mmap(part, 0, used, ESP_PARTITION_MMAP_DATA, &mapped, &handle) != ESP_OK) {
            snprintf(s_info.error, sizeof(s_info.error), "cannot map the '%s' partition", MODEL_PARTITION);
            return false;
        }
        ec_check_model(static_cast<const uint8_t *>(mapped), used, part->size, part->size, &report);
        esp_partition_munmap(handle);
    }
    if (report.rule != 0) {
        ec_screen_message(&report, s_info.error, sizeof(s_info.error));
        ESP_LOGW(TAG, "model refused (rule %s)", ec_rule_name(report.rule));
        return false;
    }
    return true;
}

static bool load_model(void)
{
    if (!partition_holds_valid_model()) {
        return false;
    }
    s_model = new dl::Model(MODEL_PARTITION, fbs::MODEL_LOCATION_IN_FLASH_PARTITION);
    s_input = s_model->get_input();
    s_output = s_model->get_output();
    if (!s_input || !s_output) {
        snprintf(s_info.error, sizeof(s_info.error), "the model has no input or no output");
        return false;
    }
    /* one grey 28x28 image: [1, 28, 28, 1] (NHWC, as esp-ppq exports) or [1, 1, 28, 28]; with one
     * channel both layouts store the pixels in the same row-major order */
    if (element_count(s_input) != DC_PIXELS) {
        snprintf(s_info.error, sizeof(s_info.error), "model input has %d elements, expected 28x28",
                 element_count(s_input));
        return false;
    }
    if (element_count(s_output) != DC_CLASSES) {
        snprintf(s_info.error, sizeof(s_info.error), "model output has %d elements, expected 10",
                 element_count(s_output));
        return false;
    }
    s_info.input_exponent = s_input->get_exponent();
    s_info.output_exponent = s_output->get_exponent();
    if (s_input->get_dtype() == dl::DATA_TYPE_INT8) {
        s_info.input_bits = 8;
        dc_input_table_int8(s_input->get_exponent(), s_table8);
    } else if (s_input->get_dtype() == dl::DATA_TYPE_INT16) {
        s_info.input_bits = 16;
        dc_input_table_int16(s_input->get_exponent(), s_table16);
    } else {
        snprintf(s_info.error, sizeof(s_info.error), "model input type %s is not int8/int16",
                 s_input->get_dtype_string());
        return false;
    }
    if (s_output->get_dtype() != dl::DATA_TYPE_INT8 && s_output->get_dtype() != dl::DATA_TYPE_INT16) {
        snprintf(s_info.error, sizeof(s_info.error), "model output type %s is not int8/int16",
                 s_output->get_dtype_string());
        return false;
    }
    ESP_LOGI(TAG, "model: int%d input, exponent %d; output exponent %d", s_info.input_bits,
             s_info.input_exponent, s_info.output_exponent);
    return true;
}

static void run_model(inference_result_t *r)
{
    int64_t t0 = esp_timer_get_time();
    if (s_info.input_bits == 8) {
        dc_quantize_int8(r->image, s_table8, static_cast<int8_t *>(s_input->get_element_ptr()));
    } else {
        dc_quantize_int16(r->image, s_table16, static_cast<int16_t *>(s_input->get_element_ptr()));
    }
    s_model->run();
    if (s_output->get_dtype() == dl::DATA_TYPE_INT8) {
        dc_dequantize_int8(static_cast<const int8_t *>(s_output->get_element_ptr()), DC_CLASSES,
                           s_output->get_exponent(), r->logits);
    } else {
        dc_dequantize_int16(static_cast<const int16_t *>(s_output->get_element_ptr()), DC_CLASSES, s_output->get_exponent(),
                            r->logits);
    }
    dc_softmax(r->logits, DC_CLASSES, r->probs);
    dc_raw_bars(r->logits, DC_CLASSES, r->raw);
    r->ran = 1;
    r->infer_us = esp_timer_get_time() - t0;
}

static void inference_task(void *arg)
{
    (void)arg;
    s_info.ready = load_model();
    if (!s_info.ready) {
        ESP_LOGW(TAG, "%s", s_info.error);
    }
    size_t n = (size_t)s_width * (size_t)s_height;
    uint8_t *copy = static_cast<uint8_t *>(heap_caps_malloc(n, MALLOC_CAP_SPIRAM));
    void *work = heap_caps_malloc(dc_workspace_bytes(s_width, s_height), MALLOC_CAP_SPIRAM);
    auto *result = static_cast<inference_result_t *>(heap_caps_calloc(1, sizeof(inference_result_t),
                                                                      MALLOC_CAP_SPIRAM));
    if (!copy || !work || !result) {
        ESP_LOGE(TAG, "out of memory for the inference buffers");
        vTaskDelete(nullptr);
        return;
    }
    const dc_thresholds_t thresholds = dc_default_thresholds();
    for (;;) {
        ulTaskNotifyTake(pdTRUE, portMAX_DELAY);
        if (!lvgl_port_lock(0)) {
            continue;
        }
        memcpy(copy, s_canvas, n);
        lvgl_port_unlock();

        memset(result, 0, sizeof(*result));
        int64_t t0 = esp_timer_get_time();
        int rc = dc_normalize_grey(copy, s_width, s_height, s_width, result->image, work);
        result->normalize_us = esp_timer_get_time() - t0;
        if (rc == DC_OK_INK && s_info.ready) {
            run_model(result);
        }
        result->decision = dc_decide(result->image, result->ran ? result->probs : nullptr, DC_CLASSES, &thresholds);
        ESP_LOGD(TAG, "state %d digit %d conf %.2f (normalize %lld us, model %lld us)", result->decision.state,
                 result->decision.digit, result->decision.confidence, (long long)result->normalize_us,
                 (long long)result->infer_us);
        if (s_done) {
            s_done(result, s_user);
        }
    }
}

extern "C" esp_err_t inference_start(const uint8_t *canvas, int width, int height, inference_done_cb done,
                                     void *user)
{
    if (!canvas || dc_workspace_bytes(width, height) == 0) {
        return ESP_ERR_INVALID_ARG;
    }
    s_canvas = canvas;
    s_width = width;
    s_height = height;
    s_done = done;
    s_user = user;
    /* below the LVGL task's priority so drawing stays fluid; ESP-DL needs a deep stack */
    BaseType_t ok = xTaskCreatePinnedToCore(inference_task, "inference", 16 * 1024, nullptr, 3, &s_task, 1);
    return ok == pdPASS ? ESP_OK : ESP_ERR_NO_MEM;
}

extern "C" void inference_request(void)
{
    if (s_task) {
        xTaskNotifyGive(s_task);
    }
}

extern "C" const model_info_t *inference_model_info(void)
{
    return &s_info;
}
