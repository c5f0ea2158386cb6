/*
 * mnistp4 on the CrowPanel Advance 7" ESP32-P4: draw a digit, see what the model reads.
 * The model is an ESP-DL .espdl in the `model` flash partition (`mnistp4 deploy`).
 */
#include "board.h"
#include "esp_log.h"
#include "ui.h"

static const char *TAG = "mnistp4";

void app_main(void)
{
    lv_display_t *display = NULL;
    ESP_ERROR_CHECK(board_init(&display));
    ESP_ERROR_CHECK(ui_start(display));
    ESP_LOGI(TAG, "running");
}
