/*
 * fmt.c - human-readable numbers, sizes, durations and names for the
 * heapwatch command's output (see tools.h).
 *
 * Results go to a ring of static buffers so that a printf can hold several
 * calls; the tool is single-threaded.
 */
#include "tools/tools.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define SLOT_SIZE 1024

static char *slot(void)
{
    static char ring[FMT_RING][SLOT_SIZE];
    static unsigned next;
    return ring[next++ % FMT_RING];
}

const char *fmt_bytes(double v)
{
    static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    char *out = slot();
    if (isnan(v)) return "?";
    double d = v;
    int u = 0;
    while (fabs(d) >= 1024 && u < 5) {
        d /= 1024;
        u++;
    }
    if (u == 0) snprintf(out, SLOT_SIZE, "%.0f B", d);
    else snprintf(out, SLOT_SIZE, fabs(d) < 10 ? "%.2f %s" : "%.1f %s", d, units[u]);
    return out;
}

const char *fmt_count(double v)
{
    char *out = slot();
    if (isnan(v)) return "?";
    if (fabs(v) >= 1e18) {
        snprintf(out, SLOT_SIZE, "%.3g", v);
        return out;
    }
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", fabs(v));
    size_t n = strlen(digits), o = 0;
    if (v <= -0.5) out[o++] = '-';
    for (size_t i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0) out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = 0;
    return out;
}

const char *fmt_num(double v)
{
    char *out = slot();
    if (isnan(v)) return "?";
    double a = fabs(v);
    if (a >= 100 || v == floor(v)) snprintf(out, SLOT_SIZE, "%.0f", v);
    else if (a >= 10) snprintf(out, SLOT_SIZE, "%.1f", v);
    else snprintf(out, SLOT_SIZE, "%.2f", v);
    return out;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

const char *fmt_metric(const char *metric, double v)
{
    char *out = slot();
    if (isnan(v)) return "?";
    if (strcmp(metric, "bytes_rate") == 0) snprintf(out, SLOT_SIZE, "%s/s", fmt_bytes(v));
    else if (ends_with(metric, "_rate")) snprintf(out, SLOT_SIZE, "%s/s", fmt_num(v));
    else if (ends_with(metric, "_bytes")) return fmt_bytes(v);
    else return fmt_num(v);
    return out;
}

const char *fmt_duration(double s)
{
    char *out = slot();
    if (isnan(s)) return "?";
    if (s < 0) s = 0;
    if (s < 1) snprintf(out, SLOT_SIZE, "%.3f s", s);
    else if (s < 60) snprintf(out, SLOT_SIZE, "%.1f s", s);
    else if (s < 3600) snprintf(out, SLOT_SIZE, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else if (s < 1e9) snprintf(out, SLOT_SIZE, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else snprintf(out, SLOT_SIZE, "%.3g s", s);
    return out;
}

const char *fmt_reltime(double s)
{
    char *out = slot();
    if (isnan(s)) return "?";
    const char *sign = s < 0 ? "-" : "+";
    double a = fabs(s);
    if (a < 60) snprintf(out, SLOT_SIZE, "%s%.1fs", sign, a);
    else if (a < 3600) snprintf(out, SLOT_SIZE, "%s%dm%02ds", sign, (int)(a / 60), (int)fmod(a, 60));
    else if (a < 1e9) snprintf(out, SLOT_SIZE, "%s%dh%02dm", sign, (int)(a / 3600), (int)fmod(a / 60, 60));
    else snprintf(out, SLOT_SIZE, "%s%.3gs", sign, a);
    return out;
}

size_t fmt_utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80) return s[0] >= 0x20 && s[0] != 0x7F;
    size_t n = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 && s[0] < 0xE0 ? 2 : 0;
    if (n == 0 || s[0] > 0xF4) return 0;
    uint32_t cp = s[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    if (cp >= 0x80 && cp < 0xA0) return 0;   /* C1 controls */
    return n;
}

const char *fmt_clean(const char *s) { return fmt_clean_max(s, 1000); }

const char *fmt_clean_max(const char *s, size_t max)
{
    char *out = slot();
    if (!s) return "?";
    if (max > 1000) max = 1000;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    while (*p && o < SLOT_SIZE - 8) {
        if (o >= max) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        size_t n = fmt_utf8_len(p);
        if (n == 0) {
            out[o++] = '?';
            p++;
            continue;
        }
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    out[o] = 0;
    return out;
}

const char *fmt_stack(const char *fn, char *const *frames, size_t nframes, size_t max)
{
    char *out = slot();
    size_t o = (size_t)snprintf(out, SLOT_SIZE, "%s", fmt_clean(fn));
    size_t first = 0;   /* the frames after fn (the agent skips wrappers such as operator new) */
    for (size_t i = 0; fn && i < nframes; i++)
        if (strcmp(frames[i], fn) == 0) {
            first = i + 1;
            break;
        }
    for (size_t i = first; i < nframes && i < first + max && o < SLOT_SIZE; i++)
        o += (size_t)snprintf(out + o, SLOT_SIZE - o, " <- %s", fmt_clean(frames[i]));
    if (nframes > first + max && o < SLOT_SIZE) snprintf(out + o, SLOT_SIZE - o, " <- ...");
    return out;
}
