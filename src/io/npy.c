/* npy.c — numpy's .npy (one array) and .npz (a zip of .npy files, stored as numpy.savez
 * writes them or deflated as numpy.savez_compressed does, through zlib). The readers check the
 * magic, the header dict, every size, every zip offset and every member's CRC. */
#include "io/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef PONTE_HAVE_ZLIB
#include <zlib.h>
#endif

/* ───────────────────────────── .npy ───────────────────────────── */

static const struct {
    pn_dtype t;
    const char *descr;
} DESCRS[] = {
    {PN_BOOL, "|b1"}, {PN_UINT8, "|u1"}, {PN_UINT16, "<u2"}, {PN_UINT32, "<u4"},
    {PN_UINT64, "<u8"}, {PN_INT8, "|i1"}, {PN_INT16, "<i2"}, {PN_INT32, "<i4"},
    {PN_INT64, "<i8"}, {PN_FLOAT16, "<f2"}, {PN_FLOAT32, "<f4"}, {PN_FLOAT64, "<f8"},
    {PN_COMPLEX64, "<c8"},
};
enum { NDESCRS = sizeof DESCRS / sizeof DESCRS[0] };

unsigned char *pnI_npy_build(pn_array *a, size_t *size)
{
    pn_scope_push();
    pn_array *src = a;
    const char *descr = NULL;
    if (a->dtype == PN_BFLOAT16) src = pn_astype(a, PN_FLOAT32); /* numpy has no bfloat16 */
    for (int i = 0; src && i < NDESCRS; i++)
        if (DESCRS[i].t == src->dtype) descr = DESCRS[i].descr;
    const void *data = src ? pn_data(src) : NULL;
    if (!descr || (!data && src->size)) {
        pn_scope_pop();
        return NULL;
    }
    char header[4096];
    int k = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int d = 0; d < src->ndim && k < 4000; d++)
        k += snprintf(header + k, sizeof header - (size_t)k, "%lld%s", (long long)src->shape[d],
                      src->ndim == 1 ? "," : d + 1 < src->ndim ? ", " : "");
    k += snprintf(header + k, sizeof header - (size_t)k, "), }");
    size_t total_head = 10 + (size_t)k + 1;
    size_t pad = (64 - total_head % 64) % 64;
    size_t hlen = (size_t)k + pad + 1;
    size_t nbytes = pn_nbytes(src);
    unsigned char *out = malloc(10 + hlen + nbytes);
    if (out) {
        memcpy(out, "\x93NUMPY\x01\x00", 8);
        out[8] = (unsigned char)(hlen & 0xff);
        out[9] = (unsigned char)(hlen >> 8);
        memcpy(out + 10, header, (size_t)k);
        memset(out + 10 + k, ' ', pad);
        out[10 + hlen - 1] = '\n';
        if (nbytes) memcpy(out + 10 + hlen, data, nbytes);
        *size = 10 + hlen + nbytes;
    } else {
        pnC_fail(PN_ERR_OUT_OF_MEMORY, "[save_npy] Out of memory.");
    }
    pn_scope_pop();
    return out;
}

/* Finds 'key': in the header dict and returns a pointer past the colon and spaces. */
static const char *dict_value(const char *h, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(h, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

pn_array *pnI_npy_parse(const unsigned char *data, size_t size, const char *what)
{
    if (size < 10 || memcmp(data, "\x93NUMPY", 6) != 0)
        return pnC_fail(PN_ERR_IO, "[load_npy] %s is not an .npy file.", what);
    int major = data[6];
    size_t hlen, off;
    if (major == 1) {
        hlen = data[8] | (size_t)data[9] << 8;
        off = 10;
    } else if (major == 2 || major == 3) {
        if (size < 12) return pnC_fail(PN_ERR_IO, "[load_npy] %s is truncated.", what);
        hlen = data[8] | (size_t)data[9] << 8 | (size_t)data[10] << 16 | (size_t)data[11] << 24;
        off = 12;
    } else {
        return pnC_fail(PN_ERR_IO, "[load_npy] %s has unsupported .npy version %d.", what, major);
    }
    if (hlen > size - off || hlen > 1 << 20)
        return pnC_fail(PN_ERR_IO, "[load_npy] %s: header is larger than the file.", what);
    char *h = malloc(hlen + 1);
    if (!h) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[load_npy] Out of memory.");
    memcpy(h, data + off, hlen);
    h[hlen] = 0;
    pn_array *result = NULL;
    const char *why = NULL;
    const char *d = dict_value(h, "descr"), *fo = dict_value(h, "fortran_order"), *sh = dict_value(h, "shape");
    pn_dtype dtype = PN_NUM_DTYPES;
    if (d && *d == '\'') {
        for (int i = 0; i < NDESCRS; i++) {
            size_t k = strlen(DESCRS[i].descr);
            if (strncmp(d + 1, DESCRS[i].descr, k) == 0 && d[1 + k] == '\'') dtype = DESCRS[i].t;
            /* '<' and '|' are interchangeable for one-byte types */
            if (DESCRS[i].descr[0] == '|' && (d[1] == '<' || d[1] == '=') &&
                strncmp(d + 2, DESCRS[i].descr + 1, k - 1) == 0 && d[1 + k] == '\'')
                dtype = DESCRS[i].t;
        }
    }
    if (dtype == PN_NUM_DTYPES) { why = "unsupported or missing dtype (big-endian and object arrays are not read)"; goto done; }
    bool fortran = fo && strncmp(fo, "True", 4) == 0;
    if (!fo || (!fortran && strncmp(fo, "False", 5) != 0)) { why = "missing fortran_order"; goto done; }
    if (!sh || *sh != '(') { why = "missing shape"; goto done; }
    int64_t shape[PNC_MAX_NDIM];
    int ndim = 0;
    const char *s = sh + 1;
    for (;;) {
        while (*s == ' ' || *s == ',') s++;
        if (*s == ')') break;
        if (*s < '0' || *s > '9' || ndim == PNC_MAX_NDIM) { why = "malformed shape"; goto done; }
        int64_t v = 0;
        while (*s >= '0' && *s <= '9') {
            if (v > (INT64_MAX - 9) / 10) { why = "shape too large"; goto done; }
            v = v * 10 + (*s++ - '0');
        }
        shape[ndim++] = v;
    }
    if (pnC_check_shape("load_npy", shape, ndim)) { pn_clear_error(); why = "invalid shape"; goto done; }
    size_t nbytes = (size_t)pnC_shape_size(shape, ndim) * pn_dtype_size(dtype);
    if (nbytes > size - off - hlen) { why = "data is shorter than the shape says"; goto done; }
    if (!fortran) {
        result = pn_array_from_data(data + off + hlen, shape, ndim, dtype);
    } else { /* column-major: read as the reversed shape, then transpose */
        int64_t rev[PNC_MAX_NDIM];
        for (int i = 0; i < ndim; i++) rev[i] = shape[ndim - 1 - i];
        pn_scope_push();
        pn_array *t = pn_array_from_data(data + off + hlen, rev, ndim, dtype);
        result = pnC_scope_return(pn_copy(pn_transpose(t, NULL, 0)));
    }
done:
    if (why) pnC_fail(PN_ERR_IO, "[load_npy] %s: %s.", what, why);
    free(h);
    return result;
}

int pnI_save_npy(const pn_writer *w, pn_array *a)
{
    if (!pnC_inputs_ok("save_npy", 1, &a)) return -1;
    size_t n;
    unsigned char *img = pnI_npy_build(a, &n);
    if (!img) return -1;
    const void *parts[1] = {img};
    int rc = pnI_write_parts(w, parts, &n, 1);
    free(img);
    return rc;
}

/* ───────────────────────────── .npz (zip: stored or deflated members) ───────────────────────────── */

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    static uint32_t table[256];
    static int ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

static void le16(unsigned char *p, unsigned v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void le32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t rd16(const unsigned char *p) { return p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const unsigned char *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* Deflates *img (len bytes, replaced by the raw deflate stream and its length) when that is
 * smaller; 0, or -1 out of memory (error set). */
static int deflate_member(unsigned char **img, size_t *len)
{
#ifdef PONTE_HAVE_ZLIB
    if (*len >= 0xffffffffu) return 0; /* too large for one call: left stored */
    z_stream z = {0};
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[savez_compressed] Out of memory.");
    uLong cap = deflateBound(&z, (uLong)*len);
    unsigned char *out = malloc(cap ? cap : 1);
    int rc = Z_MEM_ERROR;
    if (out) {
        z.next_in = *img, z.avail_in = (uInt)*len, z.next_out = out, z.avail_out = (uInt)cap;
        rc = deflate(&z, Z_FINISH);
    }
    size_t got = z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(out);
        return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[savez_compressed] Out of memory deflating a member.");
    }
    if (got < *len) {
        free(*img);
        *img = out, *len = got;
        return 1;
    }
    free(out);
#else
    (void)img, (void)len;
#endif
    return 0;
}

int pnI_save_npz(const pn_writer *w, const pn_params *p, bool compress)
{
    int n = pn_params_count(p);
    unsigned char **imgs = calloc((size_t)n + 1, sizeof *imgs);
    size_t *lens = calloc((size_t)n + 1, sizeof *lens), *raw = calloc((size_t)n + 1, sizeof *raw);
    uint32_t *crcs = calloc((size_t)n + 1, sizeof *crcs);
    bool *deflated = calloc((size_t)n + 1, sizeof *deflated);
    unsigned char *central = NULL, *locals = NULL;
    int rc = -1;
    if (!imgs || !lens || !raw || !crcs || !deflated) {
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "[save_npz] Out of memory.");
        goto done;
    }
    size_t central_size = 0, offset = 0;
    for (int i = 0; i < n; i++) {
        imgs[i] = pnI_npy_build(pn_params_at(p, i), &lens[i]);
        if (!imgs[i]) goto done;
        raw[i] = lens[i];
        crcs[i] = crc32_of(imgs[i], lens[i]);
        int d = compress ? deflate_member(&imgs[i], &lens[i]) : 0;
        if (d < 0) goto done;
        deflated[i] = d == 1;
        if (raw[i] >= 0xffffffffu || offset >= 0xffffffffu) {
            pn_set_error(PN_ERR_IO, "[save_npz] Arrays over 4 GiB need zip64, which is not written.");
            goto done;
        }
        size_t nl = strlen(pn_params_name(p, i)) + 4;
        central_size += 46 + nl;
        offset += 30 + nl + lens[i];
    }
    central = malloc(central_size + 22);
    locals = malloc((size_t)n * 64 + 1);
    const void **parts = malloc(sizeof(void *) * (size_t)(3 * n + 2));
    size_t *sizes = malloc(sizeof(size_t) * (size_t)(3 * n + 2));
    char **names = calloc((size_t)n + 1, sizeof *names);
    if (!central || !locals || !parts || !sizes || !names) {
        free(parts); free(sizes); free(names);
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "[save_npz] Out of memory.");
        goto done;
    }
    size_t cpos = 0, loff = 0;
    int np = 0;
    for (int i = 0; i < n; i++) {
        const char *name = pn_params_name(p, i);
        size_t nl = strlen(name) + 4;
        names[i] = malloc(nl + 1);
        snprintf(names[i], nl + 1, "%s.npy", name);
        const uint32_t crc = crcs[i];
        const unsigned method = deflated[i] ? 8 : 0;
        unsigned char *l = locals + (size_t)i * 64;
        le32(l, 0x04034b50); le16(l + 4, 20); le16(l + 6, 0); le16(l + 8, method); le16(l + 10, 0);
        le16(l + 12, 0x21); le32(l + 14, crc); le32(l + 18, (uint32_t)lens[i]); le32(l + 22, (uint32_t)raw[i]);
        le16(l + 26, (unsigned)nl); le16(l + 28, 0);
        unsigned char *c = central + cpos;
        le32(c, 0x02014b50); le16(c + 4, 20); le16(c + 6, 20); le16(c + 8, 0); le16(c + 10, method);
        le16(c + 12, 0); le16(c + 14, 0x21); le32(c + 16, crc); le32(c + 20, (uint32_t)lens[i]);
        le32(c + 24, (uint32_t)raw[i]); le16(c + 28, (unsigned)nl); le16(c + 30, 0); le16(c + 32, 0);
        le16(c + 34, 0); le16(c + 36, 0); le32(c + 38, 0); le32(c + 42, (uint32_t)loff);
        memcpy(c + 46, names[i], nl);
        cpos += 46 + nl;
        parts[np] = l; sizes[np++] = 30;
        parts[np] = names[i]; sizes[np++] = nl;
        parts[np] = imgs[i]; sizes[np++] = lens[i];
        loff += 30 + nl + lens[i];
    }
    unsigned char *e = central + cpos;
    le32(e, 0x06054b50); le16(e + 4, 0); le16(e + 6, 0); le16(e + 8, (unsigned)n); le16(e + 10, (unsigned)n);
    le32(e + 12, (uint32_t)cpos); le32(e + 16, (uint32_t)loff); le16(e + 20, 0);
    parts[np] = central; sizes[np++] = cpos + 22;
    rc = pnI_write_parts(w, parts, sizes, np);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names); free(parts); free(sizes);
done:
    for (int i = 0; imgs && i < n; i++) free(imgs[i]);
    free(imgs); free(lens); free(raw); free(crcs); free(deflated); free(central); free(locals);
    return rc;
}

/* A deflated member's uncomp bytes from the caching allocator (pnC_free_bytes with *cap, so the
 * memory limit bounds them), or NULL with the error set ([load_npz] path, member name). Deflate
 * expands at most 1032 times, so a size claimed beyond that is refused before anything is
 * allocated. */
static unsigned char *inflate_member(const unsigned char *data, uint32_t comp, uint32_t uncomp, size_t *cap,
                                     const char *path, const char *name)
{
#ifdef PONTE_HAVE_ZLIB
    if ((uint64_t)uncomp > (uint64_t)comp * 1032 + 64)
        return pnC_fail(PN_ERR_IO, "[load_npz] %s: member '%s': a deflated member claims more bytes than its data can hold.",
                        path, name);
    bool failed_before = pnC_failed();
    unsigned char *out = pnC_alloc_bytes(uncomp ? uncomp : 1, cap);
    if (!out) {
        if (failed_before) return NULL;
        char cause[512]; /* the allocator's error, restated with the file and member */
        snprintf(cause, sizeof cause, "%s", pn_last_error_message());
        pn_clear_error();
        return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[load_npz] %s: out of memory inflating member '%s' (%u bytes): %s",
                        path, name, uncomp, cause);
    }
    z_stream z = {0};
    int rc = inflateInit2(&z, -MAX_WBITS);
    if (rc == Z_OK) {
        z.next_in = (Bytef *)data, z.avail_in = comp, z.next_out = out, z.avail_out = uncomp;
        rc = inflate(&z, Z_FINISH);
    }
    bool whole = rc == Z_STREAM_END && z.total_out == uncomp && z.avail_in == 0;
    inflateEnd(&z);
    if (whole) return out;
    pnC_free_bytes(out, *cap);
    if (rc == Z_MEM_ERROR)
        return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[load_npz] %s: out of memory in zlib inflating member '%s'.", path, name);
    return pnC_fail(PN_ERR_IO, "[load_npz] %s: member '%s': a corrupt deflated member.", path, name);
#else
    (void)data, (void)comp, (void)uncomp, (void)cap;
    return pnC_fail(PN_ERR_IO, "[load_npz] %s: member '%s': deflated members (numpy.savez_compressed) need zlib, which "
                    "this build of Ponte was made without.", path, name);
#endif
}

pn_params *pnI_load_npz(const unsigned char *buf, size_t size, const char *path)
{
    const char *why = NULL;
    pn_params *out = NULL;
    /* the end-of-central-directory record: within the last 22 + 65535 bytes */
    size_t eocd = (size_t)-1;
    for (size_t i = size >= 22 ? size - 22 : 0; size >= 22; i--) {
        if (rd32(buf + i) == 0x06054b50) { eocd = i; break; }
        if (i == 0 || size - i > 22 + 65535) break;
    }
    if (eocd == (size_t)-1) { why = "not a zip archive"; goto done; }
    uint32_t count = rd16(buf + eocd + 10), csize = rd32(buf + eocd + 12), coff = rd32(buf + eocd + 16);
    if ((uint64_t)coff + csize > eocd) { why = "central directory lies outside the file"; goto done; }
    out = pn_params_new();
    size_t pos = coff;
    for (uint32_t i = 0; out && i < count; i++) {
        if (pos + 46 > (size_t)coff + csize || rd32(buf + pos) != 0x02014b50) { why = "corrupt central directory"; break; }
        uint32_t method = rd16(buf + pos + 10), comp = rd32(buf + pos + 20), uncomp = rd32(buf + pos + 24);
        uint32_t nl = rd16(buf + pos + 28), xl = rd16(buf + pos + 30), cl = rd16(buf + pos + 32);
        uint32_t loff = rd32(buf + pos + 42);
        if (pos + 46 + nl + xl + cl > (size_t)coff + csize) { why = "corrupt central directory"; break; }
        if (method != 0 && method != 8) { why = "a member compressed by another method than deflate"; break; }
        if ((method == 0 && comp != uncomp) || comp == 0xffffffffu || uncomp == 0xffffffffu) {
            why = "zip64 or inconsistent sizes";
            break;
        }
        char name[1024];
        if (nl < 5 || nl >= sizeof name) { why = "bad member name"; break; }
        memcpy(name, buf + pos + 46, nl);
        name[nl] = 0;
        if (strcmp(name + nl - 4, ".npy") != 0 || memchr(name, 0, nl)) { why = "member is not an .npy file"; break; }
        name[nl - 4] = 0;
        if ((uint64_t)loff + 30 > coff || rd32(buf + loff) != 0x04034b50) { why = "bad local header offset"; break; }
        uint64_t dstart = (uint64_t)loff + 30 + rd16(buf + loff + 26) + rd16(buf + loff + 28);
        if (dstart + comp > coff) { why = "member data lies outside the file"; break; }
        unsigned char *inflated = NULL;
        size_t icap = 0;
        const unsigned char *member =
            method == 8 ? (inflated = inflate_member(buf + dstart, comp, uncomp, &icap, path, name)) : buf + dstart;
        if (!member) {
            pn_params_free(out);
            out = NULL;
            break;
        }
        if (crc32_of(member, uncomp) != rd32(buf + pos + 16)) {
            if (inflated) pnC_free_bytes(inflated, icap);
            why = "CRC mismatch (corrupt member)";
            break;
        }
        pn_scope_push();
        pn_array *a = pnI_npy_parse(member, uncomp, path);
        if (inflated) pnC_free_bytes(inflated, icap);
        int rc = a ? pn_params_set(out, name, a) : -1;
        pn_scope_pop();
        if (rc) { pn_params_free(out); out = NULL; }
        pos += 46 + nl + xl + cl;
    }
done:
    if (why) {
        pn_params_free(out);
        out = NULL;
        pnC_fail(PN_ERR_IO, "[load_npz] %s: %s.", path, why);
    }
    return out;
}
