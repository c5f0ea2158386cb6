#include "board.h"

#include "driver/gpio.h"
#include "driver/i2c_master.h"
#include "driver/ledc.h"
#include "esp_check.h"
#include "esp_lcd_ek79007.h"
#include "esp_lcd_mipi_dsi.h"
#include "esp_lcd_panel_io.h"
#include "esp_lcd_panel_ops.h"
#include "esp_lcd_touch_gt911.h"
#include "esp_ldo_regulator.h"
#include "esp_log.h"
#include "esp_lvgl_port.h"

static const char *TAG = "board";

static esp_err_t power_init(void)
{
    static esp_ldo_channel_handle_t ldo_mipi, ldo_panel;
    const esp_ldo_channel_config_t mipi = {.chan_id = BOARD_LDO_MIPI_CHAN, .voltage_mv = BOARD_LDO_MIPI_MV};
    const esp_ldo_channel_config_t panel = {.chan_id = BOARD_LDO_PANEL_CHAN, .voltage_mv = BOARD_LDO_PANEL_MV};
    ESP_RETURN_ON_ERROR(esp_ldo_acquire_channel(&mipi, &ldo_mipi), TAG, "LDO%d", BOARD_LDO_MIPI_CHAN);
    ESP_RETURN_ON_ERROR(esp_ldo_acquire_channel(&panel, &ldo_panel), TAG, "LDO%d", BOARD_LDO_PANEL_CHAN);
    return ESP_OK;
}

static esp_err_t backlight_init(void)
{
    const ledc_timer_config_t timer = {
        .speed_mode = LEDC_LOW_SPEED_MODE,
        .duty_resolution = LEDC_TIMER_11_BIT,
        .timer_num = LEDC_TIMER_0,
        .freq_hz = BOARD_BACKLIGHT_PWM_HZ,
        .clk_cfg = LEDC_USE_PLL_DIV_CLK,
    };
    const ledc_channel_config_t channel = {
        .gpio_num = BOARD_GPIO_BACKLIGHT,
        .speed_mode = LEDC_LOW_SPEED_MODE,
        .channel = LEDC_CHANNEL_0,
        .intr_type = LEDC_INTR_DISABLE,
        .timer_sel = LEDC_TIMER_0,
        .duty = 0,
        .hpoint = 0,
    };
    ESP_RETURN_ON_ERROR(ledc_timer_config(&timer), TAG, "backlight timer");
    return ledc_channel_config(&channel);
}

esp_err_t board_set_backlight(uint32_t percent)
{
    percent = percent > 100 ? 100 : percent;
    /* 11-bit duty; the panel stays dark below ~10 % of full scale, so 1 % starts there (Elecrow's mapping) */
    uint32_t duty = percent ? percent * 18 + 200 : 0;
    ESP_RETURN_ON_ERROR(ledc_set_duty(LEDC_LOW_SPEED_MODE, LEDC_CHANNEL_0, duty), TAG, "duty");
    return ledc_update_duty(LEDC_LOW_SPEED_MODE, LEDC_CHANNEL_0);
}

static esp_err_t touch_init(esp_lcd_touch_handle_t *out)
{
    i2c_master_bus_handle_t bus;
    const i2c_master_bus_config_t bus_cfg = {
        .i2c_port = BOARD_I2C_PORT,
        .sda_io_num = BOARD_GPIO_I2C_SDA,
        .scl_io_num = BOARD_GPIO_I2C_SCL,
        .clk_source = I2C_CLK_SRC_DEFAULT,
        .glitch_ignore_cnt = 7,
        .flags.enable_internal_pullup = true,
    };
    ESP_RETURN_ON_ERROR(i2c_new_master_bus(&bus_cfg, &bus), TAG, "I2C bus");

    esp_lcd_panel_io_i2c_config_t io_cfg = ESP_LCD_TOUCH_IO_I2C_GT911_CONFIG();
    io_cfg.scl_speed_hz = 400000;
    /* with driver_data the driver drives INT during reset to pick the primary address (the board has
     * no INT pull-up, so without it the first probe fails before the backup address answers) */
    static esp_lcd_touch_io_gt911_config_t gt911_cfg = {.dev_addr = ESP_LCD_TOUCH_IO_I2C_GT911_ADDRESS};
    esp_lcd_touch_config_t tp_cfg = {
        .x_max = BOARD_LCD_H_RES,
        .y_max = BOARD_LCD_V_RES,
        .rst_gpio_num = BOARD_GPIO_TOUCH_RST,
        .int_gpio_num = BOARD_GPIO_TOUCH_INT,
        .levels = {.reset = 0, .interrupt = 0},
        .flags = {.swap_xy = 0, .mirror_x = 0, .mirror_y = 0},
        .driver_data = &gt911_cfg,
    };
    esp_lcd_panel_io_handle_t io;
    ESP_RETURN_ON_ERROR(esp_lcd_new_panel_io_i2c(bus, &io_cfg, &io), TAG, "touch IO");
    if (esp_lcd_touch_new_i2c_gt911(io, &tp_cfg, out) == ESP_OK) {
        return ESP_OK;
    }
    /* the GT911 answers on its backup address when INT is sampled high at reset */
    esp_lcd_panel_io_del(io);
    io_cfg.dev_addr = ESP_LCD_TOUCH_IO_I2C_GT911_ADDRESS_BACKUP;
    gt911_cfg.dev_addr = ESP_LCD_TOUCH_IO_I2C_GT911_ADDRESS_BACKUP;
    ESP_RETURN_ON_ERROR(esp_lcd_new_panel_io_i2c(bus, &io_cfg, &io), TAG, "touch IO (backup address)");
    return esp_lcd_touch_new_i2c_gt911(io, &tp_cfg, out);
}

static esp_err_t panel_init(esp_lcd_panel_io_handle_t *out_io, esp_lcd_panel_handle_t *out_panel)
{
    esp_lcd_dsi_bus_handle_t dsi_bus;
    const esp_lcd_dsi_bus_config_t bus_cfg = {
        .bus_id = 0,
        .num_data_lanes = BOARD_DSI_LANES,
        .phy_clk_src = 0,   /* 0: the driver's default (MIPI_DSI_PHY_CLK_SRC_DEFAULT is a legacy alias in 5.5) */
        .lane_bit_rate_mbps = BOARD_DSI_LANE_MBPS,
    };
    ESP_RETURN_ON_ERROR(esp_lcd_new_dsi_bus(&bus_cfg, &dsi_bus), TAG, "DSI bus");

    const esp_lcd_dbi_io_config_t dbi_cfg = {.virtual_channel = 0, .lcd_cmd_bits = 8, .lcd_param_bits = 8};
    ESP_RETURN_ON_ERROR(esp_lcd_new_panel_io_dbi(dsi_bus, &dbi_cfg, out_io), TAG, "DBI IO");

    const esp_lcd_dpi_panel_config_t dpi_cfg = {
        .dpi_clk_src = MIPI_DSI_DPI_CLK_SRC_DEFAULT,
        .dpi_clock_freq_mhz = BOARD_DPI_CLOCK_MHZ,
        .virtual_channel = 0,
        .pixel_format = LCD_COLOR_PIXEL_FORMAT_RGB565,
        .num_fbs = 1,
        .video_timing = {
            .h_size = BOARD_LCD_H_RES,
            .v_size = BOARD_LCD_V_RES,
            .hsync_back_porch = BOARD_HSYNC_BACK_PORCH,
            .hsync_pulse_width = BOARD_HSYNC_PULSE_WIDTH,
            .hsync_front_porch = BOARD_HSYNC_FRONT_PORCH,
            .vsync_back_porch = BOARD_VSYNC_BACK_PORCH,
            .vsync_pulse_width = BOARD_VSYNC_PULSE_WIDTH,
            .vsync_front_porch = BOARD_VSYNC_FRONT_PORCH,
        },
        .flags.use_dma2d = true,
    };
    ek79007_vendor_config_t vendor = {.mipi_config = {.dsi_bus = dsi_bus, .dpi_config = &dpi_cfg}};
    const esp_lcd_panel_dev_config_t dev_cfg = {
        .reset_gpio_num = -1,
        .rgb_ele_order = LCD_RGB_ELEMENT_ORDER_RGB,
        .bits_per_pixel = 16,
        .vendor_config = &vendor,
    };
    ESP_RETURN_ON_ERROR(esp_lcd_new_panel_ek79007(*out_io, &dev_cfg, out_panel), TAG, "EK79007 panel");
    ESP_RETURN_ON_ERROR(esp_lcd_panel_reset(*out_panel), TAG, "panel reset");
    return esp_lcd_panel_init(*out_panel);
}

esp_err_t board_init(lv_display_t **out_display)
{
    ESP_RETURN_ON_ERROR(power_init(), TAG, "power");
    ESP_RETURN_ON_ERROR(backlight_init(), TAG, "backlight");
    esp_lcd_touch_handle_t touch;
    ESP_RETURN_ON_ERROR(touch_init(&touch), TAG, "touch");
    esp_lcd_panel_io_handle_t io;
    esp_lcd_panel_handle_t panel;
    ESP_RETURN_ON_ERROR(panel_init(&io, &panel), TAG, "panel");

    const lvgl_port_cfg_t port_cfg = {
        .task_priority = 4,
        .task_stack = 16 * 1024,
        .task_affinity = -1,
        .task_max_sleep_ms = 10,
        .timer_period_ms = 5,
    };
    ESP_RETURN_ON_ERROR(lvgl_port_init(&port_cfg), TAG, "LVGL port");

    const lvgl_port_display_cfg_t disp_cfg = {
        .io_handle = io,
        .panel_handle = panel,
        .control_handle = panel,
        .buffer_size = BOARD_LCD_H_RES * 100,   /* partial rendering: 100 lines per flush */
        .double_buffer = true,
        .hres = BOARD_LCD_H_RES,
        .vres = BOARD_LCD_V_RES,
        .monochrome = false,
        .color_format = LV_COLOR_FORMAT_RGB565,
        .rotation = {.swap_xy = false, .mirror_x = false, .mirror_y = false},
        .flags = {.buff_dma = false, .buff_spiram = true, .sw_rotate = false},
    };
    const lvgl_port_display_dsi_cfg_t dsi_cfg = {.flags = {.avoid_tearing = false}};
    lv_display_t *display = lvgl_port_add_disp_dsi(&disp_cfg, &dsi_cfg);
    ESP_RETURN_ON_FALSE(display, ESP_FAIL, TAG, "LVGL display");

    const lvgl_port_touch_cfg_t touch_cfg = {.disp = display, .handle = touch};
    ESP_RETURN_ON_FALSE(lvgl_port_add_touch(&touch_cfg), ESP_FAIL, TAG, "LVGL touch");

    ESP_RETURN_ON_ERROR(board_set_backlight(100), TAG, "backlight on");
    ESP_LOGI(TAG, "display %dx%d and touch ready", BOARD_LCD_H_RES, BOARD_LCD_V_RES);
    *out_display = display;
    return ESP_OK;
}
