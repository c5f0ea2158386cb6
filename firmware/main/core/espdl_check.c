/*
 * The firmware's model check, see espdl_check.h. Every step mirrors check_shared() in
 * plugins/quantize/espdl_validate.py (same order, same counts), so both report the same rule.
 * All reads go through byte loads: the data may be any alignment and any content.
 */
#include "espdl_check.h"

#include <stdio.h>
#include <string.h>

#include "espdl_rules.h"

typedef struct {
    const uint8_t *buf;
    uint64_t n;
    uint64_t objects;
    int rule;               /* ER_OK until a rule breaks */
    int erased;
    char *message;
    size_t message_len;
} walker_t;

typedef struct {
    uint64_t pos, vt, vt_size;
} table_t;

static uint32_t rd_u16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd_u32(const uint8_t *p) { return rd_u16(p) | rd_u16(p + 2) << 16; }
static int64_t rd_i64(const uint8_t *p)
{
    uint64_t v = (uint64_t)rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32;
    return (int64_t)v;
}

static int fail(walker_t *w, int rule, const char *detail, uint64_t at)
{
    if (w->rule == ER_OK) {
        w->rule = rule;
        snprintf(w->message, w->message_len, "%s (%s at byte %llu)", ER_RULE_TEXT[rule], detail,
                 (unsigned long long)at);
    }
    return 0;
}

static int count(walker_t *w, uint64_t k)
{
    w->objects += k;
    return w->objects > ER_MAX_OBJECTS ? fail(w, ER_STRUCTURE, "too many objects", 0) : 1;
}

/* ---- FlatBuffers primitives (espdl_validate._Walker) -------------------------------------------- */

static int table(walker_t *w, uint64_t pos, table_t *t)
{
    if (!count(w, 1)) {
        return 0;
    }
    if (pos % 4 || pos + 4 > w->n) {
        return fail(w, ER_STRUCTURE, "table outside the data", pos);
    }
    int64_t vt = (int64_t)pos - (int32_t)rd_u32(w->buf + pos);
    if (vt < 0 || vt % 2 || (uint64_t)vt + 4 > w->n) {
        return fail(w, ER_STRUCTURE, "vtable outside the data", pos);
    }
    uint64_t vt_size = rd_u16(w->buf + vt), tbl_size = rd_u16(w->buf + vt + 2);
    if (vt_size < 4 || vt_size % 2 || (uint64_t)vt + vt_size > w->n || tbl_size < 4 || pos + tbl_size > w->n) {
        return fail(w, ER_STRUCTURE, "bad vtable", pos);
    }
    t->pos = pos;
    t->vt = (uint64_t)vt;
    t->vt_size = vt_size;
    return 1;
}

/* Position of a present field (0 when absent or broken: check w->rule). */
static uint64_t field(walker_t *w, const table_t *t, int index, uint64_t size)
{
    if (4 + 2 * (uint64_t)index + 2 > t->vt_size) {
        return 0;
    }
    uint64_t off = rd_u16(w->buf + t->vt + 4 + 2 * index);
    if (off == 0) {
        return 0;
    }
    if (off + size > rd_u16(w->buf + t->vt + 2) || (t->pos + off) % size) {
        fail(w, ER_STRUCTURE, "field outside its table", t->pos);
        return 0;
    }
    return t->pos + off;
}

static uint64_t ref(walker_t *w, const table_t *t, int index)
{
    uint64_t at = field(w, t, index, 4);
    if (!at) {
        return 0;
    }
    uint64_t target = at + rd_u32(w->buf + at);
    if (target >= w->n) {
        fail(w, ER_STRUCTURE, "reference past the data", at);
        return 0;
    }
    return target;
}

/* Length of a vector of elem-byte entries; -1 when broken. */
static int64_t vector(walker_t *w, uint64_t pos, uint64_t elem)
{
    if (pos % 4 || pos + 4 > w->n) {
        fail(w, ER_STRUCTURE, "vector outside the data", pos);
        return -1;
    }
    uint64_t length = rd_u32(w->buf + pos);
    if (pos + 4 + length * elem > w->n || (pos + 4) % (elem < 8 ? elem : 8)) {
        fail(w, ER_STRUCTURE, "vector runs past the data", pos);
        return -1;
    }
    return (int64_t)length;
}

/* Length of a NUL-terminated string; -1 when broken. */
static int64_t string(walker_t *w, uint64_t pos)
{
    int64_t length = vector(w, pos, 1);
    if (length < 0) {
        return -1;
    }
    if (pos + 4 + (uint64_t)length >= w->n || w->buf[pos + 4 + (uint64_t)length] != 0) {
        fail(w, ER_STRUCTURE, "string not terminated", pos);
        return -1;
    }
    return length;
}

static int64_t scalar(walker_t *w, const table_t *t, int index, int kind)
{
    uint64_t size = kind == ER_K_U8 ? 1 : (kind == ER_K_I64 ? 8 : 4);
    uint64_t at = field(w, t, index, size);
    if (!at) {
        return 0;
    }
    if (kind == ER_K_U8) {
        return w->buf[at];
    }
    return kind == ER_K_I64 ? rd_i64(w->buf + at) : (int32_t)rd_u32(w->buf + at);
}

static uint64_t scalar_bytes(int kind)
{
    return kind == ER_K_U8 ? 1 : (kind == ER_K_I64 ? 8 : 4);
}

/* Check a table of schema kind `type` and everything under it. */
static int walk(walker_t *w, uint64_t pos, int type, table_t *out)
{
    table_t t;
    if (!table(w, pos, &t)) {
        return 0;
    }
    const er_table_t *schema = &ER_TABLES[type];
    for (int f = 0; f < schema->count; f++) {
        const er_field_t *fd = &schema->fields[f];
        if (fd->kind <= ER_K_I64) {
            field(w, &t, fd->index, scalar_bytes(fd->kind));
            if (w->rule) {
                return 0;
            }
            continue;
        }
        uint64_t target = ref(w, &t, fd->index);
        if (w->rule) {
            return 0;
        }
        if (!target) {
            continue;
        }
        table_t child;
        if (fd->kind == ER_K_STR) {
            string(w, target);
        } else if (fd->kind == ER_K_VEC) {
            int64_t length = vector(w, target, fd->arg);
            if (length >= 0) {
                count(w, (uint64_t)length);
            }
        } else if (fd->kind == ER_K_TABLE) {
            walk(w, target, fd->arg, &child);
        } else if (fd->kind == ER_K_UNION) {
            int64_t union_type = scalar(w, &t, fd->index - 1, ER_K_U8);
            walk(w, target, union_type == 1 ? fd->arg : ER_T_BARE, &child);
        } else { /* ER_K_STRS, ER_K_TABLES: vectors of references */
            int64_t length = vector(w, target, 4);
            if (length >= 0 && count(w, (uint64_t)length)) {
                for (int64_t i = 0; i < length && !w->rule; i++) {
                    uint64_t at = target + 4 + 4 * (uint64_t)i;
                    uint64_t item = at + rd_u32(w->buf + at);
                    if (item >= w->n) {
                        fail(w, ER_STRUCTURE, "reference past the data", at);
                    } else if (fd->kind == ER_K_STRS) {
                        string(w, item);
                    } else {
                        walk(w, item, fd->arg, &child);
                    }
                }
            }
        }
        if (w->rule) {
            return 0;
        }
    }
    *out = t;
    return 1;
}

/* ---- typed reads of walked fields ---------------------------------------------------------------- */

static int sub(walker_t *w, const table_t *t, int index, table_t *out)
{
    uint64_t target = ref(w, t, index);
    return target ? table(w, target, out) : 0;
}

/* Number of entries of a vector of references (0 when absent); item(i) gives entry i. */
static uint64_t items(walker_t *w, const table_t *t, int index, uint64_t *vec)
{
    *vec = ref(w, t, index);
    return *vec ? rd_u32(w->buf + *vec) : 0;
}

static uint64_t item(walker_t *w, uint64_t vec, uint64_t i)
{
    uint64_t at = vec + 4 + 4 * i;
    return at + rd_u32(w->buf + at);
}

static int bits_of(int64_t code)
{
    return code == ER_TYPE_INT8 ? 8 : (code == ER_TYPE_INT16 ? 16 : 0);
}

/* The graph input or output: one int8/int16 tensor of `elements` values with one exponent. */
static int value_info(walker_t *w, uint64_t pos, int rule, int64_t elements, int *bits, int *exponent)
{
    const char *what = rule == ER_INPUT ? "input" : "output";
    char detail[48];
    table_t vi, ti, tts, shape, dim, dv;
    if (!table(w, pos, &vi)) {
        return 0;
    }
    if (!sub(w, &vi, ER_F_VALUE_INFO_VALUE_INFO_TYPE, &ti) || scalar(w, &ti, ER_F_TYPE_INFO_VALUE_TYPE, ER_K_U8) != 1) {
        return w->rule ? 0 : fail(w, rule, "no tensor type", pos);
    }
    int has_tts = sub(w, &ti, ER_F_TYPE_INFO_VALUE, &tts);
    int64_t code = has_tts ? scalar(w, &tts, ER_F_TENSOR_TYPE_AND_SHAPE_ELEM_TYPE, ER_K_I32) : 0;
    if (w->rule) {
        return 0;
    }
    if (!bits_of(code)) {
        snprintf(detail, sizeof(detail), "%s type %lld", what, (long long)code);
        return fail(w, rule, detail, pos);
    }
    uint64_t dims_vec = 0, dims = 0;
    if (sub(w, &tts, ER_F_TENSOR_TYPE_AND_SHAPE_SHAPE, &shape)) {
        dims = items(w, &shape, ER_F_TENSOR_SHAPE_DIM, &dims_vec);
    }
    int64_t total = 1;
    for (uint64_t i = 0; i < dims && !w->rule; i++) {
        int64_t size = 0;
        if (table(w, item(w, dims_vec, i), &dim) && sub(w, &dim, ER_F_DIMENSION_VALUE, &dv)) {
            size = scalar(w, &dv, ER_F_DIMENSION_VALUE_DIM_VALUE, ER_K_I64);
        }
        if (w->rule) {
            return 0;
        }
        if (size <= 0 || size > elements) {
            snprintf(detail, sizeof(detail), "%s dimension %lld", what, (long long)size);
            return fail(w, rule, detail, pos);
        }
        total *= size;
    }
    if (w->rule) {
        return 0;
    }
    if (!dims || total != elements) {
        snprintf(detail, sizeof(detail), "%s has %lld values", what, (long long)(dims ? total : 0));
        return fail(w, rule, detail, pos);
    }
    uint64_t exps = ref(w, &vi, ER_F_VALUE_INFO_EXPONENTS);
    if (w->rule) {
        return 0;
    }
    int64_t e = exps && rd_u32(w->buf + exps) == 1 ? rd_i64(w->buf + exps + 4) : ER_EXPONENT_LIMIT + 1;
    if (e < -ER_EXPONENT_LIMIT || e > ER_EXPONENT_LIMIT) {
        snprintf(detail, sizeof(detail), "%s exponent", what);
        return fail(w, rule, detail, pos);
    }
    *bits = bits_of(code);
    *exponent = (int)e;
    return 1;
}

static int known_op(const uint8_t *name, int64_t length)
{
    for (int i = 0; i < ER_KNOWN_OP_COUNT; i++) {
        if ((int64_t)strlen(ER_KNOWN_OPS[i]) == length && memcmp(ER_KNOWN_OPS[i], name, (size_t)length) == 0) {
            return 1;
        }
    }
    return 0;
}

/* ---- the rules ----------------------------------------------------------------------------------- */

static int header_rules(walker_t *w, const uint8_t *data, uint64_t data_bytes, uint64_t available,
                        uint64_t partition_bytes, uint32_t *length)
{
    char detail[64];
    if (available < ER_HEADER_BYTES || data_bytes < ER_HEADER_BYTES) {
        return fail(w, ER_HEADER, "header", 0);
    }
    w->erased = 1;
    for (unsigned i = 0; i < ER_HEADER_BYTES; i++) {
        w->erased &= data[i] == 0xFF;
    }
    if (memcmp(data, ER_MAGIC_BYTES, 4) != 0) {
        return fail(w, ER_MAGIC, "magic", 0);
    }
    uint32_t mode = rd_u32(data + 4);
    *length = rd_u32(data + 8);
    if (mode != 0) {
        snprintf(detail, sizeof(detail), "mode %lu", (unsigned long)mode);
        return fail(w, ER_MODE, detail, 4);
    }
    uint64_t end = ER_HEADER_BYTES + (uint64_t)*length;
    if (*length == 0 || end > available || end > data_bytes) {
        snprintf(detail, sizeof(detail), "%lu bytes announced", (unsigned long)*length);
        return fail(w, ER_LENGTH, detail, 8);
    }
    if (partition_bytes && end > partition_bytes) {
        snprintf(detail, sizeof(detail), "%llu bytes > %llu", (unsigned long long)end,
                 (unsigned long long)partition_bytes);
        return fail(w, ER_PARTITION, detail, 8);
    }
    return 1;
}

static void start(walker_t *w, ec_report_t *report)
{
    memset(report, 0, sizeof(*report));
    memset(w, 0, sizeof(*w));
    w->message = report->message;
    w->message_len = sizeof(report->message);
}

size_t ec_check_header(const uint8_t *head, size_t head_bytes, size_t available, size_t partition_bytes,
                       ec_report_t *report)
{
    walker_t w;
    uint32_t length = 0;
    start(&w, report);
    /* the data after the header is read later: it counts as present up to `available` */
    uint64_t readable = head && head_bytes >= ER_HEADER_BYTES ? available : 0;
    int ok = head ? header_rules(&w, head, readable, available, partition_bytes, &length)
                  : fail(&w, ER_HEADER, "no data", 0);
    report->rule = w.rule;
    report->erased = w.erased;
    return ok ? ER_HEADER_BYTES + (size_t)length : 0;
}

int ec_check_model(const uint8_t *data, size_t data_bytes, size_t available, size_t partition_bytes,
                   ec_report_t *report)
{
    walker_t w;
    uint32_t length = 0;
    start(&w, report);
    if (!data || !header_rules(&w, data, data_bytes, available, partition_bytes, &length)) {
        if (!data) {
            fail(&w, ER_HEADER, "no data", 0);
        }
        report->rule = w.rule;
        report->erased = w.erased;
        return w.rule;
    }
    w.buf = data + ER_HEADER_BYTES;
    w.n = length;
    table_t model, graph, node;
    int in_bits = 0, in_exp = 0, out_bits = 0, out_exp = 0;
    uint64_t inputs_vec = 0, outputs_vec = 0, nodes_vec = 0;
    if (w.n < 4) {
        fail(&w, ER_STRUCTURE, "no root table", 0);
    } else if (walk(&w, rd_u32(w.buf), ER_ROOT_TABLE, &model)) {
        if (!sub(&w, &model, ER_F_MODEL_GRAPH, &graph)) {
            if (!w.rule) {
                fail(&w, ER_STRUCTURE, "no graph", 0);
            }
        } else {
            uint64_t n_in = items(&w, &graph, ER_F_GRAPH_INPUT, &inputs_vec);
            uint64_t n_out = items(&w, &graph, ER_F_GRAPH_OUTPUT, &outputs_vec);
            if (!w.rule && (n_in != 1 || n_out != 1)) {
                char detail[48];
                snprintf(detail, sizeof(detail), "%llu inputs, %llu outputs", (unsigned long long)n_in,
                         (unsigned long long)n_out);
                fail(&w, ER_IO_COUNT, detail, 0);
            }
            if (!w.rule && value_info(&w, item(&w, inputs_vec, 0), ER_INPUT, ER_INPUT_ELEMENTS, &in_bits, &in_exp) &&
                value_info(&w, item(&w, outputs_vec, 0), ER_OUTPUT, ER_OUTPUT_ELEMENTS, &out_bits, &out_exp)) {
                uint64_t n_nodes = items(&w, &graph, ER_F_GRAPH_NODE, &nodes_vec);
                for (uint64_t i = 0; i < n_nodes && !w.rule; i++) {
                    uint64_t node_pos = item(&w, nodes_vec, i);
                    if (!table(&w, node_pos, &node)) {
                        break;
                    }
                    uint64_t op = ref(&w, &node, ER_F_NODE_OP_TYPE);
                    int64_t op_len = op ? string(&w, op) : 0;
                    if (!w.rule && !known_op(op ? w.buf + op + 4 : w.buf, op_len < 0 ? 0 : op_len)) {
                        fail(&w, ER_OP, "unknown op", node_pos);
                    }
                }
            }
        }
    }
    report->rule = w.rule;
    report->erased = w.erased;
    if (w.rule == ER_OK) {
        report->data_bytes = length;
        report->input_bits = in_bits;
        report->input_exponent = in_exp;
        report->output_bits = out_bits;
        report->output_exponent = out_exp;
    }
    return w.rule;
}

void ec_screen_message(const ec_report_t *report, char *out, size_t out_len)
{
    if (report->rule == ER_OK) {
        snprintf(out, out_len, "model ready");
    } else if (report->erased) {
        snprintf(out, out_len, "no model in the 'model' partition: run mnistp4 deploy RUN_DIR --port PORT");
    } else {
        snprintf(out, out_len, "model invalid: %s; run mnistp4 deploy RUN_DIR --port PORT", report->message);
    }
}

const char *ec_rule_name(int rule)
{
    return rule >= 0 && rule < ER_RULE_COUNT ? ER_RULE_NAMES[rule] : "?";
}
