/* safetensors.c — .safetensors reading and writing: an 8-byte little-endian header size, a
 * JSON header {"__metadata__": {"key": "string", ...}, "name": {"dtype": "F32", "shape": [..],
 * "data_offsets": [b, e]}, ...}, then the data (the string metadata as a pn_gguf_meta map).
 * The reader's JSON parser accepts exactly this structure and checks every size, offset and
 * overlap against the file. */
#include "io/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CODES[PN_NUM_DTYPES] = {"BOOL", "U8",  "U16", "U32", "U64", "I8",   "I16",
                                           "I32",  "I64", "F16", "F32", "F64", "BF16", "C64"};

/* ───────────────────────────── writing ───────────────────────────── */

typedef struct {
    char *s;
    size_t n, cap;
} text;

static int put(text *t, const char *s, size_t k)
{
    if (t->n + k + 1 > t->cap) {
        size_t cap = (t->cap + k + 1) * 2;
        char *ns = realloc(t->s, cap);
        if (!ns) return -1;
        t->s = ns;
        t->cap = cap;
    }
    memcpy(t->s + t->n, s, k);
    t->n += k;
    t->s[t->n] = 0;
    return 0;
}

static int putf(text *t, const char *fmt, long long a, long long b)
{
    char buf[64];
    int k = snprintf(buf, sizeof buf, fmt, a, b);
    return put(t, buf, (size_t)k);
}

static int put_json_string(text *t, const char *s)
{
    if (put(t, "\"", 1)) return -1;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            if (put(t, e, 2)) return -1;
        } else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            if (put(t, e, 6)) return -1;
        } else if (put(t, (const char *)&c, 1)) {
            return -1;
        }
    }
    return put(t, "\"", 1);
}

int pnI_save_safetensors(const pn_writer *w, const pn_params *p, const pn_gguf_meta *meta)
{
    int n = pn_params_count(p), nmeta = meta ? pn_gguf_meta_count(meta) : 0;
    for (int i = 0; i < nmeta; i++) {
        const char *const *strs;
        bool list;
        if (pn_gguf_meta_strings(meta, i, &strs, &list) != 1 || list)
            return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                                "[save_safetensors] Metadata values must be strings (\"%s\").",
                                pn_gguf_meta_key(meta, i));
    }
    if (pn_params_eval(p)) return -1;
    text h = {0};
    int rc = put(&h, "{", 1);
    if (nmeta) { /* {"__metadata__": {"key": "value", ...}, ...} first, as MLX writes it */
        rc |= put(&h, "\"__metadata__\":{", 16);
        for (int i = 0; i < nmeta && rc == 0; i++) {
            const char *const *strs;
            bool list;
            pn_gguf_meta_strings(meta, i, &strs, &list);
            if (i) rc |= put(&h, ",", 1);
            rc |= put_json_string(&h, pn_gguf_meta_key(meta, i));
            rc |= put(&h, ":", 1);
            rc |= put_json_string(&h, strs[0]);
        }
        rc |= put(&h, n ? "}," : "}", n ? 2 : 1);
    }
    size_t offset = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        pn_array *a = pn_params_at(p, i);
        if (i) rc |= put(&h, ",", 1);
        rc |= put_json_string(&h, pn_params_name(p, i));
        rc |= put(&h, ":{\"dtype\":\"", 11);
        rc |= put(&h, CODES[a->dtype], strlen(CODES[a->dtype]));
        rc |= put(&h, "\",\"shape\":[", 11);
        for (int d = 0; d < a->ndim; d++) rc |= putf(&h, d ? ",%lld" : "%lld", (long long)a->shape[d], 0);
        size_t nb = pn_nbytes(a);
        rc |= putf(&h, "],\"data_offsets\":[%lld,%lld]}", (long long)offset, (long long)(offset + nb));
        offset += nb;
    }
    rc |= put(&h, "}", 1);
    while (rc == 0 && h.n % 8) rc |= put(&h, " ", 1); /* pad so data is 8-byte aligned */
    if (rc) {
        free(h.s);
        return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[save] Out of memory.");
    }
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    int nparts = n + 2;
    const void **parts = malloc(sizeof(void *) * (size_t)nparts);
    size_t *sizes = malloc(sizeof(size_t) * (size_t)nparts);
    if (!parts || !sizes) {
        free(parts); free(sizes); free(h.s);
        return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[save] Out of memory.");
    }
    parts[0] = len; sizes[0] = 8;
    parts[1] = h.s; sizes[1] = h.n;
    for (int i = 0; i < n && rc == 0; i++) {
        pn_array *a = pn_params_at(p, i);
        parts[2 + i] = pn_data(a); /* row-contiguous host data */
        sizes[2 + i] = pn_nbytes(a);
        if (!parts[2 + i] && sizes[2 + i]) rc = -1;
    }
    if (rc == 0) rc = pnI_write_parts(w, parts, sizes, nparts);
    free(parts);
    free(sizes);
    free(h.s);
    return rc;
}

/* ───────────────────────────── reading ───────────────────────────── */

typedef struct {
    const char *s, *end;
    const char *path;
    bool bad;
} parser;

static void skip_ws(parser *p)
{
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\n' || *p->s == '\r' || *p->s == '\t')) p->s++;
}

static bool expect(parser *p, char c)
{
    skip_ws(p);
    if (p->s < p->end && *p->s == c) {
        p->s++;
        return true;
    }
    p->bad = true;
    return false;
}

static bool peek(parser *p, char c)
{
    skip_ws(p);
    return p->s < p->end && *p->s == c;
}

/* A JSON string into a malloc'd C string (\uXXXX below 0x80 and the simple escapes). */
static char *parse_string(parser *p)
{
    if (!expect(p, '"')) return NULL;
    size_t cap = 32, n = 0;
    char *out = malloc(cap);
    while (out && p->s < p->end && *p->s != '"') {
        char c = *p->s++;
        if (c == '\\') {
            if (p->s >= p->end) break;
            char e = *p->s++;
            if (e == 'u') {
                if (p->end - p->s < 4) break;
                unsigned v = 0;
                for (int i = 0; i < 4; i++) {
                    char h = *p->s++;
                    v = v * 16 + (unsigned)(h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : 99);
                }
                if (v > 0x7f) { p->bad = true; break; }
                c = (char)v;
            } else {
                c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' : e;
            }
        }
        if (c == 0) { p->bad = true; break; }
        if (n + 2 > cap) {
            char *o = realloc(out, cap *= 2);
            if (!o) { free(out); out = NULL; break; }
            out = o;
        }
        out[n++] = c;
    }
    if (!out || p->bad || p->s >= p->end) {
        free(out);
        p->bad = true;
        return NULL;
    }
    p->s++; /* closing quote */
    out[n] = 0;
    return out;
}

static int64_t parse_uint(parser *p)
{
    skip_ws(p);
    int64_t v = 0;
    const char *start = p->s;
    while (p->s < p->end && *p->s >= '0' && *p->s <= '9') {
        if (v > (INT64_MAX - 9) / 10) { p->bad = true; return 0; }
        v = v * 10 + (*p->s++ - '0');
    }
    if (p->s == start) p->bad = true;
    return v;
}

/* Skips any JSON value (for __metadata__), with a depth limit. */
static void skip_value(parser *p, int depth)
{
    skip_ws(p);
    if (depth > 32 || p->s >= p->end) { p->bad = true; return; }
    char c = *p->s;
    if (c == '"') { free(parse_string(p)); return; }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        p->s++;
        if (peek(p, close)) { p->s++; return; }
        do {
            if (c == '{') { free(parse_string(p)); expect(p, ':'); }
            skip_value(p, depth + 1);
        } while (!p->bad && peek(p, ',') && p->s++);
        expect(p, close);
        return;
    }
    while (p->s < p->end && *p->s != ',' && *p->s != '}' && *p->s != ']') p->s++;
}

typedef struct {
    char *name;
    pn_dtype dtype;
    int ndim;
    int64_t shape[PNC_MAX_NDIM];
    int64_t begin, end;
} entry;

static bool parse_entry(parser *p, entry *e)
{
    bool have_dtype = false, have_shape = false, have_off = false;
    if (!expect(p, '{')) return false;
    do {
        char *key = parse_string(p);
        if (!key || !expect(p, ':')) { free(key); return false; }
        if (!strcmp(key, "dtype")) {
            char *code = parse_string(p);
            have_dtype = false;
            for (int t = 0; code && t < PN_NUM_DTYPES; t++)
                if (!strcmp(code, CODES[t])) { e->dtype = (pn_dtype)t; have_dtype = true; }
            if (code && !strcmp(code, "F8_E4M3")) { /* as MLX: the raw e4m3 codes, uint8 */
                e->dtype = PN_UINT8;
                have_dtype = true;
            }
            free(code);
            if (!have_dtype) { free(key); p->bad = true; return false; }
        } else if (!strcmp(key, "shape")) {
            expect(p, '[');
            e->ndim = 0;
            if (!peek(p, ']')) {
                do {
                    if (e->ndim == PNC_MAX_NDIM) { p->bad = true; break; }
                    e->shape[e->ndim++] = parse_uint(p);
                } while (!p->bad && peek(p, ',') && p->s++);
            }
            expect(p, ']');
            have_shape = true;
        } else if (!strcmp(key, "data_offsets")) {
            expect(p, '[');
            e->begin = parse_uint(p);
            expect(p, ',');
            e->end = parse_uint(p);
            expect(p, ']');
            have_off = true;
        } else {
            skip_value(p, 1);
        }
        free(key);
    } while (!p->bad && peek(p, ',') && p->s++);
    expect(p, '}');
    if (!p->bad && !(have_dtype && have_shape && have_off)) p->bad = true;
    return !p->bad;
}

/* The "__metadata__" object's string values into *meta (created on first use); other
 * values are skipped. */
static void parse_metadata(parser *p, pn_gguf_meta **meta)
{
    if (!expect(p, '{') || peek(p, '}')) {
        expect(p, '}');
        return;
    }
    do {
        char *key = parse_string(p);
        if (!key || !expect(p, ':')) {
            free(key);
            return;
        }
        if (peek(p, '"')) {
            char *v = parse_string(p);
            if (v && !*meta) *meta = pn_gguf_meta_new();
            const char *vs = v;
            if (v && (!*meta || pn_gguf_meta_set_strings(*meta, key, &vs, 1, false))) p->bad = true;
            free(v);
        } else {
            skip_value(p, 2);
        }
        free(key);
    } while (!p->bad && peek(p, ',') && p->s++);
    expect(p, '}');
}

pn_params *pnI_load_safetensors(const unsigned char *buf, size_t size, const char *path,
                                pn_gguf_meta **meta)
{
    pn_params *out = NULL;
    entry *entries = NULL;
    int nentries = 0, cap = 0;
    const char *why = NULL;
    uint64_t hlen = 0;
    if (size < 8) { why = "file is shorter than its 8-byte header size"; goto done; }
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)buf[i] << (8 * i);
    if (hlen > size - 8 || hlen < 2) { why = "header size is larger than the file"; goto done; }
    parser p = {(const char *)buf + 8, (const char *)buf + 8 + hlen, path, false};
    if (!expect(&p, '{')) { why = "header is not a JSON object"; goto done; }
    if (!peek(&p, '}')) {
        do {
            char *name = parse_string(&p);
            if (!name || !expect(&p, ':')) { free(name); break; }
            if (!strcmp(name, "__metadata__")) {
                free(name);
                if (meta) parse_metadata(&p, meta);
                else skip_value(&p, 1);
                continue;
            }
            if (nentries == cap) {
                cap = cap ? cap * 2 : 16;
                entry *ne = realloc(entries, sizeof *ne * (size_t)cap);
                if (!ne) { free(name); p.bad = true; break; }
                entries = ne;
            }
            entry *e = &entries[nentries];
            memset(e, 0, sizeof *e);
            e->name = name;
            nentries++;
            if (!parse_entry(&p, e)) break;
        } while (!p.bad && peek(&p, ',') && p.s++);
    }
    expect(&p, '}');
    if (p.bad) { why = "malformed JSON header"; goto done; }
    size_t data_size = size - 8 - hlen;
    const unsigned char *data = buf + 8 + hlen;
    for (int i = 0; i < nentries; i++) { /* every tensor inside the data, sized by its shape */
        entry *e = &entries[i];
        if (pnC_check_shape("load", e->shape, e->ndim)) { pn_clear_error(); why = "a tensor has an invalid shape"; goto done; }
        int64_t count = pnC_shape_size(e->shape, e->ndim);
        uint64_t nbytes = (uint64_t)count * pn_dtype_size(e->dtype);
        if (e->begin > e->end || (uint64_t)e->end > data_size || (uint64_t)(e->end - e->begin) != nbytes) {
            why = "a tensor's data offsets do not match its shape or lie outside the file";
            goto done;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(entries[j].name, e->name)) { why = "duplicate tensor name"; goto done; }
    }
    out = pn_params_new();
    for (int i = 0; out && i < nentries; i++) {
        entry *e = &entries[i];
        pn_scope_push();
        pn_array *a = pn_array_from_data(data + e->begin, e->shape, e->ndim, e->dtype);
        int rc = a ? pn_params_set(out, e->name, a) : -1;
        pn_scope_pop();
        if (rc) { pn_params_free(out); out = NULL; }
    }
done:
    if (why) pnC_fail(PN_ERR_IO, "[load_safetensors] %s: %s.", path, why);
    if (!out && meta) {
        pn_gguf_meta_free(*meta);
        *meta = NULL;
    }
    for (int i = 0; i < nentries; i++) free(entries[i].name);
    free(entries);
    return out;
}
