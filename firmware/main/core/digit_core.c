/*
 * Portable digit core, see digit_core.h. The numbered steps follow plugins/digit_normalizer.py.
 * Integer steps use int64 (exact like Python integers for canvases up to DC_MAX_PIXELS); the Otsu
 * score and the input table use double exactly as the Python side does with float64.
 */
#include "digit_core.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- workspace layout (one block, carved in fixed order) ------------------------------------- */

typedef struct {
    uint8_t *grey;    /* n bytes: dense grey copy */
    uint8_t *ink;     /* n bytes: dense ink image */
    int32_t *labels;  /* n ints: component label per pixel (0 = not ink class) */
    int32_t *queue;   /* n ints: flood-fill queue, then reused as a byte mask */
    int32_t *areas;   /* blocks + 1 ints: area per label, then the keep flag */
    int64_t *rows;    /* h * DC_BOX int64: rows resampled horizontally */
} workspace_t;

static size_t align8(size_t v) { return (v + 7u) & ~(size_t)7u; }

/* Components of an 8-connected mask: at most one per aligned 2x2 block. */
static size_t max_components(int width, int height)
{
    return (size_t)((width + 1) / 2) * (size_t)((height + 1) / 2);
}

static int size_ok(int width, int height)
{
    return width > 0 && height > 0 && (int64_t)width * height <= DC_MAX_PIXELS;
}

size_t dc_workspace_bytes(int width, int height)
{
    if (!size_ok(width, height)) {
        return 0;
    }
    size_t n = (size_t)width * (size_t)height;
    size_t off = align8(2 * n);                       /* grey + ink */
    off += 4 * n + 4 * n;                             /* labels + queue */
    off = align8(off + 4 * (max_components(width, height) + 1));
    off += 8 * (size_t)height * DC_BOX;               /* rows */
    return off;
}

static workspace_t carve(void *work, int width, int height)
{
    size_t n = (size_t)width * (size_t)height;
    uint8_t *base = (uint8_t *)work;
    workspace_t ws;
    ws.grey = base;
    ws.ink = base + n;
    size_t off = align8(2 * n);
    ws.labels = (int32_t *)(void *)(base + off);
    off += 4 * n;
    ws.queue = (int32_t *)(void *)(base + off);
    off += 4 * n;
    ws.areas = (int32_t *)(void *)(base + off);
    off = align8(off + 4 * (max_components(width, height) + 1));
    ws.rows = (int64_t *)(void *)(base + off);
    return ws;
}

/* ---- integer helpers ---------------------------------------------------------------------------- */

/* floor(a / b) for b > 0, like Python's // */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && (a < 0)) {
        q -= 1;
    }
    return q;
}

/* round_half_up(num / den) = floor((2 num + den) / (2 den)), den > 0 */
static int64_t round_half_up_div(int64_t num, int64_t den)
{
    return floor_div(2 * num + den, 2 * den);
}

/* round_half_down(num / den) = floor((2 num + den - 1) / (2 den)), den > 0 */
static int64_t round_half_down_div(int64_t num, int64_t den)
{
    return floor_div(2 * num + den - 1, 2 * den);
}

static int64_t clip64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* ---- step 1: grey levels -------------------------------------------------------------------------- */

void dc_rgb565_to_grey(const uint16_t *src, int width, int height, int stride, uint8_t *dst)
{
    for (int y = 0; y < height; y++) {
        const uint16_t *row = src + (size_t)y * (size_t)stride;
        for (int x = 0; x < width; x++) {
            uint32_t p = row[x];
            uint32_t r5 = (p >> 11) & 0x1f, g6 = (p >> 5) & 0x3f, b5 = p & 0x1f;
            uint32_t r = (r5 << 3) | (r5 >> 2), g = (g6 << 2) | (g6 >> 4), b = (b5 << 3) | (b5 >> 2);
            dst[(size_t)y * (size_t)width + (size_t)x] = (uint8_t)((77u * r + 150u * g + 29u * b + 128u) >> 8);
        }
    }
}

/* ---- steps 2-5: ink ------------------------------------------------------------------------------- */

/* Otsu's threshold t (class 0 = levels <= t) or -1 for a single grey level. */
static int otsu_threshold(const int64_t hist[256])
{
    int64_t n = 0, s = 0;
    for (int v = 0; v < 256; v++) {
        n += hist[v];
        s += hist[v] * v;
    }
    int64_t n0 = 0, s0 = 0;
    double best = -1.0;
    int best_t = -1;
    for (int t = 0; t < 255; t++) {
        n0 += hist[t];
        s0 += hist[t] * t;
        int64_t n1 = n - n0, s1 = s - s0;
        if (n0 == 0 || n1 == 0) {
            continue;
        }
        double d = (double)(n1 * s0 - n0 * s1);
        double score = d * d / (double)(n0 * n1);
        if (score > best) { /* strict: the first maximum wins, like numpy's argmax */
            best = score;
            best_t = t;
        }
    }
    return best_t;
}

/* Label the 8-connected components of mask (labels != 0 on input marks the mask) and store areas.
 * Returns the number of components. */
static int32_t label_components(int width, int height, int32_t *labels, int32_t *queue, int32_t *areas)
{
    int32_t count = 0;
    size_t n = (size_t)width * (size_t)height;
    for (size_t start = 0; start < n; start++) {
        if (labels[start] != -1) {
            continue;
        }
        count += 1;
        int32_t area = 0;
        size_t head = 0, tail = 0;
        labels[start] = count;
        queue[tail++] = (int32_t)start;
        while (head < tail) {
            int32_t p = queue[head++];
            area += 1;
            int py = p / width, px = p % width;
            for (int dy = -1; dy <= 1; dy++) {
                int yy = py + dy;
                if (yy < 0 || yy >= height) {
                    continue;
                }
                for (int dx = -1; dx <= 1; dx++) {
                    int xx = px + dx;
                    if (xx < 0 || xx >= width) {
                        continue;
                    }
                    size_t q = (size_t)yy * (size_t)width + (size_t)xx;
                    if (labels[q] == -1) {
                        labels[q] = count;
                        queue[tail++] = (int32_t)q;
                    }
                }
            }
        }
        areas[count] = area;
    }
    return count;
}

/* extract_ink on the dense grey image of the workspace, result in ws->ink. */
static int extract_dense(const workspace_t *ws, int width, int height)
{
    size_t n = (size_t)width * (size_t)height;
    const uint8_t *g = ws->grey;
    uint8_t *ink = ws->ink;
    int64_t hist[256];
    memset(hist, 0, sizeof(hist));
    for (size_t p = 0; p < n; p++) {
        hist[g[p]] += 1;
    }
    memset(ink, 0, n);
    int t = otsu_threshold(hist);
    if (t < 0) {
        return DC_OK_EMPTY;
    }

    /* 3. polarity from the border pixels in the bright class (rows 0 and h-1, then the side
     * columns of the rows in between; a 1-row image counts its row twice, as the spec does):
     * at least 3/4 bright, at most 1/4 bright, or decided by area */
    int64_t border = 0, border_size = 2 * (int64_t)width + 2 * (int64_t)(height > 2 ? height - 2 : 0);
    for (int x = 0; x < width; x++) {
        border += g[x] > t;
        border += g[(size_t)(height - 1) * (size_t)width + (size_t)x] > t;
    }
    for (int y = 1; y < height - 1; y++) {
        border += g[(size_t)y * (size_t)width] > t;
        border += g[(size_t)y * (size_t)width + (size_t)(width - 1)] > t;
    }
    int ink_is_dark;
    if (4 * border >= 3 * border_size) {
        ink_is_dark = 1;                      /* a bright frame: dark ink on paper */
    } else if (4 * border <= border_size) {
        ink_is_dark = 0;                      /* a dark frame: light ink, MNIST's convention */
    } else {                                  /* mixed (tight crop): the ink is the smaller class */
        int64_t n1 = 0;
        for (int v = t + 1; v < 256; v++) {
            n1 += hist[v];
        }
        ink_is_dark = n1 > (int64_t)n - n1;
    }

    /* 4. ink levels: background mean -> 0, ink mean -> 255 */
    int64_t dark_n = 0, dark_s = 0, light_n = 0, light_s = 0;
    for (int v = 0; v < 256; v++) {
        if (v <= t) {
            dark_n += hist[v];
            dark_s += hist[v] * v;
        } else {
            light_n += hist[v];
            light_s += hist[v] * v;
        }
    }
    int64_t nb = ink_is_dark ? light_n : dark_n, sb = ink_is_dark ? light_s : dark_s;
    int64_t ni = ink_is_dark ? dark_n : light_n, si = ink_is_dark ? dark_s : light_s;
    int64_t den = si * nb - sb * ni;
    int64_t absden = den < 0 ? -den : den;
    if (absden < (int64_t)DC_MIN_CONTRAST * nb * ni) {
        return DC_OK_EMPTY;
    }
    int64_t sign = den > 0 ? 1 : -1;
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) {
        int64_t num = sign * 255 * ((int64_t)v * nb - sb) * ni;
        lut[v] = (uint8_t)clip64(round_half_up_div(num, sign * den), 0, 255);
    }

    /* 5. specks: 8-connected components of the ink class */
    int32_t *labels = ws->labels;
    for (size_t p = 0; p < n; p++) {
        int bright = g[p] > t;
        labels[p] = (bright != ink_is_dark) ? -1 : 0;  /* -1: ink class, not yet labelled */
    }
    int32_t count = label_components(width, height, labels, ws->queue, ws->areas);
    if (count == 0) {
        return DC_OK_EMPTY;
    }
    int32_t largest = 0;
    for (int32_t k = 1; k <= count; k++) {
        if (ws->areas[k] > largest) {
            largest = ws->areas[k];
        }
    }
    for (int32_t k = 1; k <= count; k++) {
        int32_t a = ws->areas[k];
        ws->areas[k] = (a >= DC_SPECK_MIN_AREA && (int64_t)a * DC_SPECK_FRACTION_DEN >= largest) ? 1 : 0;
    }
    ws->areas[0] = 0;

    /* dilate the kept components by a 3x3 square (outside the image counts as not kept):
     * a horizontal pass into a byte mask, then a vertical pass while writing the ink */
    uint8_t *hmask = (uint8_t *)(void *)ws->queue;
    for (int y = 0; y < height; y++) {
        const int32_t *lrow = labels + (size_t)y * (size_t)width;
        uint8_t *hrow = hmask + (size_t)y * (size_t)width;
        for (int x = 0; x < width; x++) {
            uint8_t k = (uint8_t)ws->areas[lrow[x]];
            if (x > 0) {
                k |= (uint8_t)ws->areas[lrow[x - 1]];
            }
            if (x + 1 < width) {
                k |= (uint8_t)ws->areas[lrow[x + 1]];
            }
            hrow[x] = k;
        }
    }
    int any = 0;
    for (int y = 0; y < height; y++) {
        for (int x = 0; x < width; x++) {
            size_t p = (size_t)y * (size_t)width + (size_t)x;
            uint8_t k = hmask[p];
            if (y > 0) {
                k |= hmask[p - (size_t)width];
            }
            if (y + 1 < height) {
                k |= hmask[p + (size_t)width];
            }
            uint8_t v = k ? lut[g[p]] : 0;
            ink[p] = v;
            any |= v != 0;
        }
    }
    return any ? DC_OK_INK : DC_OK_EMPTY;
}

/* Dense grey copy with the spec's rule for 0/1 images (read as 0/255). */
static void copy_grey(const uint8_t *src, int width, int height, int stride, uint8_t *dst)
{
    uint8_t max = 0;
    for (int y = 0; y < height; y++) {
        const uint8_t *row = src + (size_t)y * (size_t)stride;
        memcpy(dst + (size_t)y * (size_t)width, row, (size_t)width);
        for (int x = 0; x < width; x++) {
            max = row[x] > max ? row[x] : max;
        }
    }
    if (max <= 1) {
        size_t n = (size_t)width * (size_t)height;
        for (size_t p = 0; p < n; p++) {
            dst[p] = (uint8_t)(dst[p] * 255u);
        }
    }
}

int dc_extract_ink(const uint8_t *grey, int width, int height, int stride, uint8_t *ink, void *work)
{
    if (!grey || !ink || !work || !size_ok(width, height) || stride < width) {
        return DC_ERR_ARG;
    }
    workspace_t ws = carve(work, width, height);
    copy_grey(grey, width, height, stride, ws.grey);
    int rc = extract_dense(&ws, width, height);
    memcpy(ink, ws.ink, (size_t)width * (size_t)height);
    return rc;
}

/* ---- fit_28 ------------------------------------------------------------------------------------------ */

/* Overlap of source pixel s (edges s*dst, (s+1)*dst) with output pixel o (edges o*src, (o+1)*src). */
static int64_t area_weight(int64_t src, int64_t dst, int64_t o, int64_t s)
{
    int64_t lo = o * src > s * dst ? o * src : s * dst;
    int64_t hi = (o + 1) * src < (s + 1) * dst ? (o + 1) * src : (s + 1) * dst;
    return hi > lo ? hi - lo : 0;
}

static int fit_box(const uint8_t *ink, int stride, int r0, int c0, int h, int w, int64_t *rows,
                   uint8_t out[DC_PIXELS])
{
    /* 2. scaled size: the long side becomes DC_BOX, the short side keeps the aspect ratio */
    int nh, nw;
    if (h >= w) {
        nh = DC_BOX;
        nw = (w * DC_BOX + h / 2) / h;
        nw = nw < 1 ? 1 : nw;
    } else {
        nw = DC_BOX;
        nh = (h * DC_BOX + w / 2) / w;
        nh = nh < 1 ? 1 : nh;
    }

    /* 3. area resampling in exact integers: rows first (h x nw), then columns */
    for (int y = 0; y < h; y++) {
        const uint8_t *src = ink + (size_t)(r0 + y) * (size_t)stride + (size_t)c0;
        for (int j = 0; j < nw; j++) {
            int x_lo = (int)(((int64_t)j * w) / nw);
            int x_hi = (int)(((int64_t)(j + 1) * w + nw - 1) / nw);
            int64_t acc = 0;
            for (int x = x_lo; x < x_hi && x < w; x++) {
                acc += area_weight(w, nw, j, x) * src[x];
            }
            rows[(size_t)y * DC_BOX + (size_t)j] = acc;
        }
    }
    int64_t patch[DC_BOX][DC_BOX];
    int64_t total = 0, sy = 0, sx = 0;
    for (int i = 0; i < nh; i++) {
        int y_lo = (int)(((int64_t)i * h) / nh);
        int y_hi = (int)(((int64_t)(i + 1) * h + nh - 1) / nh);
        for (int j = 0; j < nw; j++) {
            int64_t acc = 0;
            for (int y = y_lo; y < y_hi && y < h; y++) {
                acc += area_weight(h, nh, i, y) * rows[(size_t)y * DC_BOX + (size_t)j];
            }
            int64_t v = round_half_up_div(acc, (int64_t)h * w);
            patch[i][j] = v;
            total += v;
            sy += v * i;
            sx += v * j;
        }
    }
    memset(out, 0, DC_PIXELS);
    if (total == 0) {
        return DC_OK_EMPTY;
    }

    /* 4. centre of mass to (DC_CENTRE, DC_CENTRE), halves rounded down (a symmetric 20-pixel patch
     * stays in rows/columns 4..23), the patch kept inside the frame */
    int top = (int)clip64(round_half_down_div((int64_t)DC_CENTRE * total - sy, total), 0, DC_SIZE - nh);
    int left = (int)clip64(round_half_down_div((int64_t)DC_CENTRE * total - sx, total), 0, DC_SIZE - nw);
    for (int i = 0; i < nh; i++) {
        for (int j = 0; j < nw; j++) {
            out[(top + i) * DC_SIZE + left + j] = (uint8_t)patch[i][j];
        }
    }
    return DC_OK_INK;
}

int dc_fit_28(const uint8_t *ink, int width, int height, int stride, uint8_t out[DC_PIXELS], void *work)
{
    if (!ink || !out || !work || !size_ok(width, height) || stride < width) {
        return DC_ERR_ARG;
    }
    /* 1. bounding box of the ink */
    int r0 = height, r1 = -1, c0 = width, c1 = -1;
    for (int y = 0; y < height; y++) {
        const uint8_t *row = ink + (size_t)y * (size_t)stride;
        for (int x = 0; x < width; x++) {
            if (row[x]) {
                r0 = y < r0 ? y : r0;
                r1 = y;
                c0 = x < c0 ? x : c0;
                c1 = x > c1 ? x : c1;
            }
        }
    }
    if (r1 < 0) {
        memset(out, 0, DC_PIXELS);
        return DC_OK_EMPTY;
    }
    workspace_t ws = carve(work, width, height);
    return fit_box(ink, stride, r0, c0, r1 - r0 + 1, c1 - c0 + 1, ws.rows, out);
}

int dc_normalize_grey(const uint8_t *grey, int width, int height, int stride, uint8_t out[DC_PIXELS],
                      void *work)
{
    if (!grey || !out || !work || !size_ok(width, height) || stride < width) {
        return DC_ERR_ARG;
    }
    workspace_t ws = carve(work, width, height);
    copy_grey(grey, width, height, stride, ws.grey);
    if (extract_dense(&ws, width, height) != DC_OK_INK) {
        memset(out, 0, DC_PIXELS);
        return DC_OK_EMPTY;
    }
    return dc_fit_28(ws.ink, width, height, width, out, work);
}

int dc_normalize_rgb565(const uint16_t *rgb, int width, int height, int stride, uint8_t out[DC_PIXELS],
                        void *work)
{
    if (!rgb || !out || !work || !size_ok(width, height) || stride < width) {
        return DC_ERR_ARG;
    }
    workspace_t ws = carve(work, width, height);
    dc_rgb565_to_grey(rgb, width, height, stride, ws.grey);
    if (extract_dense(&ws, width, height) != DC_OK_INK) {
        memset(out, 0, DC_PIXELS);
        return DC_OK_EMPTY;
    }
    return dc_fit_28(ws.ink, width, height, width, out, work);
}

/* ---- model input and output --------------------------------------------------------------------- */

static double round_half_even(double v)
{
    double f = floor(v);
    double d = v - f;
    if (d > 0.5) {
        return f + 1.0;
    }
    if (d < 0.5) {
        return f;
    }
    return fmod(f, 2.0) == 0.0 ? f : f + 1.0;
}

static double input_scaled(int v, int exponent)
{
    double x = ((double)v / 255.0 - DC_MEAN) / DC_STD;
    return ldexp(x, -exponent);
}

void dc_input_table_int8(int exponent, int8_t table[256])
{
    for (int v = 0; v < 256; v++) {
        double q = round_half_even(input_scaled(v, exponent));
        table[v] = (int8_t)(q < -128.0 ? -128.0 : (q > 127.0 ? 127.0 : q));
    }
}

void dc_input_table_int16(int exponent, int16_t table[256])
{
    for (int v = 0; v < 256; v++) {
        double q = round_half_even(input_scaled(v, exponent));
        table[v] = (int16_t)(q < -32768.0 ? -32768.0 : (q > 32767.0 ? 32767.0 : q));
    }
}

void dc_quantize_int8(const uint8_t image[DC_PIXELS], const int8_t table[256], int8_t *out)
{
    for (int p = 0; p < DC_PIXELS; p++) {
        out[p] = table[image[p]];
    }
}

void dc_quantize_int16(const uint8_t image[DC_PIXELS], const int16_t table[256], int16_t *out)
{
    for (int p = 0; p < DC_PIXELS; p++) {
        out[p] = table[image[p]];
    }
}

void dc_dequantize_int8(const int8_t *q, int n, int exponent, float *out)
{
    for (int i = 0; i < n; i++) {
        out[i] = ldexpf((float)q[i], exponent);
    }
}

void dc_dequantize_int16(const int16_t *q, int n, int exponent, float *out)
{
    for (int i = 0; i < n; i++) {
        out[i] = ldexpf((float)q[i], exponent);
    }
}

int dc_argmax(const float *values, int n)
{
    if (n <= 0) {
        return -1;
    }
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (values[i] > values[best]) {
            best = i;
        }
    }
    return best;
}

float dc_expf(float x)
{
    if (x < -87.0f) {
        return 0.0f;
    }
    x = x > 88.0f ? 88.0f : x;
    float t = x * 1.44269504f;                             /* x / ln 2 */
    int k = (int)(t < 0.0f ? t - 0.5f : t + 0.5f);         /* nearest integer, -126..127 here */
    float kf = (float)k;
    float r = (x - kf * 0.693145752f) - kf * 1.42860677e-6f;  /* ln 2 in two parts: k * hi is exact */
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6.0f + r * (1.0f / 24.0f + r * (1.0f / 120.0f +
              r * (1.0f / 720.0f + r * (1.0f / 5040.0f)))))));
    union {
        uint32_t bits;
        float value;
    } scale;
    scale.bits = (uint32_t)(k + 127) << 23;                /* 2^k, a normal float for -126..127 */
    return p * scale.value;
}

void dc_softmax(const float *logits, int n, float *probs)
{
    if (n <= 0) {
        return;
    }
    float m = logits[dc_argmax(logits, n)];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        probs[i] = dc_expf(logits[i] - m);
        sum += probs[i];
    }
    for (int i = 0; i < n; i++) {
        probs[i] /= sum;
    }
}

void dc_raw_bars(const float *logits, int n, float *bars)
{
    if (n <= 0) {
        return;
    }
    float m = logits[dc_argmax(logits, n)];
    for (int i = 0; i < n; i++) {
        float v = m > 0.0f ? logits[i] / m : 0.0f;
        bars[i] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    }
}

/* ---- decision ----------------------------------------------------------------------------------- */

dc_thresholds_t dc_default_thresholds(void)
{
    dc_thresholds_t t;
    t.min_ink_pixels = 8;
    t.max_fill_permille = 700;
    t.min_confidence = 0.60f;
    t.min_margin = 0.20f;
    return t;
}

void dc_ink_stats(const uint8_t image[DC_PIXELS], int *ink_pixels, int *fill_permille)
{
    int lit = 0, r0 = DC_SIZE, r1 = -1, c0 = DC_SIZE, c1 = -1;
    for (int y = 0; y < DC_SIZE; y++) {
        for (int x = 0; x < DC_SIZE; x++) {
            if (image[y * DC_SIZE + x]) {
                lit += 1;
                r0 = y < r0 ? y : r0;
                r1 = y;
                c0 = x < c0 ? x : c0;
                c1 = x > c1 ? x : c1;
            }
        }
    }
    int fill = 0;
    if (lit) {
        int saturated = 0;
        for (int y = r0; y <= r1; y++) {
            for (int x = c0; x <= c1; x++) {
                saturated += image[y * DC_SIZE + x] >= 128;
            }
        }
        fill = saturated * 1000 / ((r1 - r0 + 1) * (c1 - c0 + 1));
    }
    if (ink_pixels) {
        *ink_pixels = lit;
    }
    if (fill_permille) {
        *fill_permille = fill;
    }
}

dc_decision_t dc_decide(const uint8_t image[DC_PIXELS], const float *probs, int n,
                        const dc_thresholds_t *thresholds)
{
    dc_thresholds_t th = thresholds ? *thresholds : dc_default_thresholds();
    dc_decision_t d;
    memset(&d, 0, sizeof(d));
    d.digit = -1;
    dc_ink_stats(image, &d.ink_pixels, &d.fill_permille);
    if (d.ink_pixels < th.min_ink_pixels) {
        d.state = DC_STATE_EMPTY;
        return d;
    }
    if (probs && n > 0) {
        d.digit = dc_argmax(probs, n);
        d.confidence = probs[d.digit];
        float second = 0.0f;
        for (int i = 0; i < n; i++) {
            if (i != d.digit && probs[i] > second) {
                second = probs[i];
            }
        }
        d.margin = d.confidence - second;
    }
    if (d.fill_permille > th.max_fill_permille) {
        d.state = DC_STATE_SCRIBBLE;
    } else if (!probs || n <= 0 || d.confidence < th.min_confidence || d.margin < th.min_margin) {
        d.state = DC_STATE_UNSURE;
    } else {
        d.state = DC_STATE_DIGIT;
    }
    return d;
}

/* ---- what the screen shows ----------------------------------------------------------------------- */

static int percent(float share)
{
    return (int)(share * 100.0f + 0.5f);
}

void dc_screen_text(const dc_decision_t *d, int model_ready, const char *model_error, char *answer,
                    size_t answer_len, char *status, size_t status_len)
{
    if (!model_ready) {
        snprintf(answer, answer_len, "-");
        snprintf(status, status_len, "%s", model_error ? model_error : "no model");
        return;
    }
    switch (d->state) {
    case DC_STATE_DIGIT:
        snprintf(answer, answer_len, "%d", d->digit);
        snprintf(status, status_len, "confidence %d %%", percent(d->confidence));
        break;
    case DC_STATE_UNSURE:
        snprintf(answer, answer_len, "?");
        snprintf(status, status_len, "unsure (best %d at %d %%)", d->digit, percent(d->confidence));
        break;
    case DC_STATE_SCRIBBLE:
        snprintf(answer, answer_len, "?");
        snprintf(status, status_len, "no digit: that does not look like one");
        break;
    default:
        snprintf(answer, answer_len, "%s", "");
        snprintf(status, status_len, "draw a digit");
        break;
    }
}

/* ---- drawing ------------------------------------------------------------------------------------ */

void dc_draw_segment(uint8_t *canvas, int width, int height, int stride, int x0, int y0, int x1, int y1,
                     int radius, uint8_t value)
{
    if (!canvas || radius < 0 || width <= 0 || height <= 0) {
        return;
    }
    int xmin = (x0 < x1 ? x0 : x1) - radius, xmax = (x0 > x1 ? x0 : x1) + radius;
    int ymin = (y0 < y1 ? y0 : y1) - radius, ymax = (y0 > y1 ? y0 : y1) + radius;
    xmin = xmin < 0 ? 0 : xmin;
    ymin = ymin < 0 ? 0 : ymin;
    xmax = xmax >= width ? width - 1 : xmax;
    ymax = ymax >= height ? height - 1 : ymax;
    int64_t dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy, r2 = (int64_t)radius * radius;
    for (int y = ymin; y <= ymax; y++) {
        uint8_t *row = canvas + (size_t)y * (size_t)stride;
        for (int x = xmin; x <= xmax; x++) {
            /* squared distance to the segment, in exact integers scaled by len2^2 */
            int64_t px = x - x0, py = y - y0, dist2;
            int64_t dot = px * dx + py * dy;
            if (len2 == 0 || dot <= 0) {
                dist2 = (px * px + py * py);
            } else if (dot >= len2) {
                int64_t qx = x - x1, qy = y - y1;
                dist2 = qx * qx + qy * qy;
            } else {
                int64_t cross = px * dy - py * dx;  /* distance^2 = cross^2 / len2 */
                dist2 = -1;
                if (cross * cross <= r2 * len2 && row[x] < value) {
                    row[x] = value;
                }
            }
            if (dist2 >= 0 && dist2 <= r2 && row[x] < value) {
                row[x] = value;
            }
        }
    }
}
