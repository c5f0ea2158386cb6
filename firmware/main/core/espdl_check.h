/*
 * The model check the firmware runs before ESP-DL sees the `model` partition. ESP-DL's loader asserts
 * on a bad header (and a failed assert reboots the board, again and again) and follows the
 * FlatBuffers offsets of the file without bounds checks, so a bad, truncated or half-written model is
 * refused here with a reason for the screen instead.
 *
 * The rules, their order and codes, the known ops and the FlatBuffers fields come from espdl_rules.h,
 * generated from the host validator (plugins/quantize/espdl_validate.py); the host tests run this
 * check against that validator on good and mutated files. Plain C11, no allocation, no ESP-IDF.
 */
#ifndef ESPDL_CHECK_H
#define ESPDL_CHECK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EC_HEADER_BYTES 16u

typedef struct {
    int rule;               /* 0 (ok) or the code of the first rule broken (enum er_rule) */
    char message[112];      /* what is wrong, for the screen; "" when ok */
    uint32_t data_bytes;    /* model data after the header (ok only) */
    int input_bits;         /* 8 or 16 */
    int input_exponent;
    int output_bits;
    int output_exponent;
    int erased;             /* the header bytes are all 0xFF: nothing was ever written there */
} ec_report_t;

/* Header rules only, on the first EC_HEADER_BYTES of the partition. Returns the bytes the model
 * occupies (header + data) when they pass, else 0 with report->rule set. available: bytes that can
 * hold the model (file or partition size); partition_bytes: the model partition, 0 if unknown. */
size_t ec_check_header(const uint8_t *head, size_t head_bytes, size_t available, size_t partition_bytes,
                       ec_report_t *report);

/* Every shared rule on data (head_bytes readable bytes from the start of the model). Returns
 * report->rule. */
int ec_check_model(const uint8_t *data, size_t data_bytes, size_t available, size_t partition_bytes,
                   ec_report_t *report);

/* The screen's line for a refused model: "no model ..." for an erased partition, else
 * "model invalid: <what>; run mnistp4 deploy ...". */
void ec_screen_message(const ec_report_t *report, char *out, size_t out_len);

/* The rule's short name ("ok", "magic", "structure", ...), or "?" for an unknown code. */
const char *ec_rule_name(int rule);

#ifdef __cplusplus
}
#endif

#endif /* ESPDL_CHECK_H */
