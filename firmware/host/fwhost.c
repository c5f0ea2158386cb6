/*
 * The firmware's portable parts as one host program: the model check, the canvas normalization, the
 * model input, and the score post-processing, printing what the screen would show. The tests run it
 * built with gcc and, built for the ESP32-P4's ISA, under qemu-riscv32. ESP-DL itself does not run
 * here: the model's integer outputs come in with each canvas (the host interpreter computes them).
 *
 * stdin (little-endian): "FWH1", u32 partition bytes (0: unknown), u32 model bytes, the .espdl bytes,
 * u32 canvas count; per canvas: u16 width, u16 height, u8 format (0 grey, 1 RGB565), u8 has_outputs,
 * u16 0, then 10 x i32 model outputs if has_outputs, then the pixels (RGB565 as u16).
 * stdout: one "model ..." line, then one line per canvas (fields described in bench/fwcore.py).
 *
 * Or "FWM1", u32 count, then per model: u32 available, u32 partition bytes, u32 length, the bytes;
 * stdout: one "check rule=N name=NAME" line per model (the model check alone, for fuzzing).
 *
 * Or "FWX1", u32 count, count float32 values: stdout one line, the hex bytes of dc_expf of each.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "digit_core.h"
#include "espdl_check.h"
#include "host_io.h"

#define MAX_SIDE 1024
#define MAX_MODEL (8u * 1024u * 1024u)

static uint8_t s_model[MAX_MODEL];
static uint16_t s_canvas[MAX_SIDE * MAX_SIDE];
static uint8_t s_work[12u * MAX_SIDE * MAX_SIDE];
static char s_out[16384];
static size_t s_out_len;

static int read_exact(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        long got = host_read(p, len);
        if (got <= 0) {
            return 0;
        }
        p += got;
        len -= (size_t)got;
    }
    return 1;
}

static uint32_t read_u32(int *ok)
{
    uint8_t b[4] = {0, 0, 0, 0};
    *ok = *ok && read_exact(b, 4);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void flush(void)
{
    size_t done = 0;
    while (done < s_out_len) {
        long put = host_write(s_out + done, s_out_len - done);
        if (put <= 0) {
            break;
        }
        done += (size_t)put;
    }
    s_out_len = 0;
}

static void emit(const char *text)
{
    size_t len = strlen(text);
    if (s_out_len + len > sizeof(s_out)) {
        flush();
    }
    memcpy(s_out + s_out_len, text, len);
    s_out_len += len;
}

static void emit_hex(const char *key, const void *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = data;
    char chunk[65];
    emit(key);
    for (size_t i = 0; i < len; i += 32) {
        size_t n = len - i < 32 ? len - i : 32, k = 0;
        for (size_t j = 0; j < n; j++) {
            chunk[k++] = digits[p[i + j] >> 4];
            chunk[k++] = digits[p[i + j] & 15];
        }
        chunk[k] = 0;
        emit(chunk);
    }
}

static void run_canvas(const ec_report_t *model, const char *model_error, int width, int height, int format,
                       const int32_t *outputs)
{
    uint8_t image[DC_PIXELS];
    float logits[DC_CLASSES], probs[DC_CLASSES], raw[DC_CLASSES];
    int8_t in8[DC_PIXELS], q8[DC_CLASSES];
    int16_t in16[DC_PIXELS], q16[DC_CLASSES];
    int rc = format == 1 ? dc_normalize_rgb565(s_canvas, width, height, width, image, s_work)
                         : dc_normalize_grey((const uint8_t *)s_canvas, width, height, width, image, s_work);
    int ready = model->rule == 0;
    int ran = rc == DC_OK_INK && ready && outputs;   /* as inference.cpp: the model runs on ink only */
    memset(probs, 0, sizeof(probs));
    memset(raw, 0, sizeof(raw));
    char line[96];
    snprintf(line, sizeof(line), "rc=%d ran=%d", rc, ran);
    emit(line);
    emit_hex(" image=", image, DC_PIXELS);
    if (ready) {
        if (model->input_bits == 8) {
            int8_t table[256];
            dc_input_table_int8(model->input_exponent, table);
            dc_quantize_int8(image, table, in8);
            emit_hex(" input=", in8, sizeof(in8));
        } else {
            int16_t table[256];
            dc_input_table_int16(model->input_exponent, table);
            dc_quantize_int16(image, table, in16);
            emit_hex(" input=", in16, sizeof(in16));
        }
    }
    if (ran) {
        for (int i = 0; i < DC_CLASSES; i++) {
            q8[i] = (int8_t)outputs[i];
            q16[i] = (int16_t)outputs[i];
        }
        if (model->output_bits == 8) {
            dc_dequantize_int8(q8, DC_CLASSES, model->output_exponent, logits);
        } else {
            dc_dequantize_int16(q16, DC_CLASSES, model->output_exponent, logits);
        }
        dc_softmax(logits, DC_CLASSES, probs);
        dc_raw_bars(logits, DC_CLASSES, raw);
    }
    const dc_thresholds_t thresholds = dc_default_thresholds();
    dc_decision_t d = dc_decide(image, ran ? probs : NULL, DC_CLASSES, &thresholds);
    emit_hex(" probs=", probs, sizeof(probs));
    emit_hex(" raw=", raw, sizeof(raw));
    emit_hex(" confidence=", &d.confidence, sizeof(d.confidence));
    char answer[8], status[224];
    dc_screen_text(&d, ready, model_error, answer, sizeof(answer), status, sizeof(status));
    snprintf(line, sizeof(line), " state=%d digit=%d answer=\"%s\"", d.state, d.digit, answer);
    emit(line);
    emit(" status=\"");
    emit(status);
    emit("\"\n");
}

/* Each model in its own exactly-sized slot at the end of s_model, so reading past it is caught by
 * address sanitizer builds. */
static int check_models(void)
{
    int ok = 1;
    uint32_t count = read_u32(&ok);
    for (uint32_t m = 0; ok && m < count; m++) {
        uint32_t available = read_u32(&ok), partition = read_u32(&ok), length = read_u32(&ok);
        if (!ok || length > MAX_MODEL) {
            emit("error: bad model\n");
            flush();
            return 2;
        }
        uint8_t *slot = s_model + (MAX_MODEL - length);
        ok = read_exact(slot, length);
        ec_report_t report;
        char line[64];
        ec_check_model(length ? slot : s_model + MAX_MODEL - 1, length, available, partition, &report);
        snprintf(line, sizeof(line), "check rule=%d name=%s\n", report.rule, ec_rule_name(report.rule));
        emit(line);
    }
    flush();
    return ok ? 0 : 2;
}

/* dc_expf on many values: its bits on this machine, for comparing C libraries and ISAs. */
static int exp_values(void)
{
    int ok = 1;
    uint32_t count = read_u32(&ok);
    emit("exp=");
    for (uint32_t i = 0; ok && i < count; i++) {
        float x, y;
        ok = read_exact(&x, sizeof(x));
        y = dc_expf(x);
        emit_hex("", &y, sizeof(y));
    }
    emit("\n");
    flush();
    return ok ? 0 : 2;
}

int main(void)
{
    char magic[4];
    int ok = read_exact(magic, 4);
    if (ok && memcmp(magic, "FWM1", 4) == 0) {
        return check_models();
    }
    if (ok && memcmp(magic, "FWX1", 4) == 0) {
        return exp_values();
    }
    ok = ok && memcmp(magic, "FWH1", 4) == 0;
    uint32_t partition = read_u32(&ok), model_bytes = read_u32(&ok);
    if (!ok || model_bytes > MAX_MODEL || !read_exact(s_model, model_bytes)) {
        emit("error: bad request\n");
        flush();
        return 2;
    }
    ec_report_t report;
    ec_check_model(s_model, model_bytes, model_bytes, partition, &report);
    char model_error[224], line[480];
    ec_screen_message(&report, model_error, sizeof(model_error));
    snprintf(line, sizeof(line), "model rule=%d name=%s input_bits=%d input_exponent=%d output_bits=%d "
             "output_exponent=%d screen=\"%s\"\n", report.rule, ec_rule_name(report.rule), report.input_bits,
             report.input_exponent, report.output_bits, report.output_exponent, model_error);
    emit(line);
    uint32_t count = read_u32(&ok);
    for (uint32_t c = 0; ok && c < count; c++) {
        uint8_t head[8];
        int32_t outputs[DC_CLASSES];
        ok = read_exact(head, sizeof(head));
        int width = head[0] | head[1] << 8, height = head[2] | head[3] << 8, format = head[4];
        if (!ok || width < 1 || height < 1 || width > MAX_SIDE || height > MAX_SIDE || format > 1) {
            emit("error: bad canvas\n");
            break;
        }
        for (int i = 0; head[5] && i < DC_CLASSES; i++) {
            outputs[i] = (int32_t)read_u32(&ok);
        }
        ok = ok && read_exact(s_canvas, (size_t)width * (size_t)height * (format == 1 ? 2u : 1u));
        if (ok) {
            run_canvas(&report, model_error, width, height, format, head[5] ? outputs : NULL);
        }
    }
    flush();
    return ok ? 0 : 2;
}
