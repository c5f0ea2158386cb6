/*
 * CrowPanel Advance 7" ESP32-P4 HMI AI Display: power, backlight, MIPI-DSI panel (EK79007,
 * 1024x600), GT911 touch, and the LVGL port.
 *
 * Pins, LDO channels, DSI lane settings and panel timings come from Elecrow's public ESP-IDF
 * examples for this board (repository Elecrow-RD/CrowPanel-Advanced-7inch-ESP32-P4-HMI-AI-Display-
 * 1024x600-IPS-Touch-Screen, example/idf-code/Lesson09-LVGL_Lighting_Control: bsp_illuminate,
 * bsp_display, bsp_i2c and main.c) and the board's schematic in the same repository.
 */
#pragma once

#include "esp_err.h"
#include "lvgl.h"

#define BOARD_LCD_H_RES 1024
#define BOARD_LCD_V_RES 600

/* MIPI-DSI PHY and panel power: LDO3 at 2.5 V, LDO4 at 3.3 V */
#define BOARD_LDO_MIPI_CHAN 3
#define BOARD_LDO_MIPI_MV 2500
#define BOARD_LDO_PANEL_CHAN 4
#define BOARD_LDO_PANEL_MV 3300

/* Backlight PWM */
#define BOARD_GPIO_BACKLIGHT 31
#define BOARD_BACKLIGHT_PWM_HZ 30000

/* GT911 on I2C0 */
#define BOARD_I2C_PORT 0
#define BOARD_GPIO_I2C_SDA 45
#define BOARD_GPIO_I2C_SCL 46
#define BOARD_GPIO_TOUCH_RST 40
#define BOARD_GPIO_TOUCH_INT 42

/* MIPI-DSI: 2 data lanes at 900 Mbps, DPI clock 51 MHz, RGB565 */
#define BOARD_DSI_LANES 2
#define BOARD_DSI_LANE_MBPS 900
#define BOARD_DPI_CLOCK_MHZ 51
#define BOARD_HSYNC_BACK_PORCH 160
#define BOARD_HSYNC_PULSE_WIDTH 70
#define BOARD_HSYNC_FRONT_PORCH 160
#define BOARD_VSYNC_BACK_PORCH 23
#define BOARD_VSYNC_PULSE_WIDTH 10
#define BOARD_VSYNC_FRONT_PORCH 12

/* Power, touch, panel and LVGL (esp_lvgl_port task); returns the LVGL display. */
esp_err_t board_init(lv_display_t **out_display);

/* Backlight 0..100 % */
esp_err_t board_set_backlight(uint32_t percent);
