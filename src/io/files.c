/* files.c — whole-file reading and atomic writing for the formats, the one dispatch over the
 * formats (pn_save_to: through a writer; pn_load_from: from a file image in memory), and the
 * path functions over it (pn_save_params / pn_load_params by file extension, npy, gguf). */
#include "io/io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned char *pnI_read_file(const char *path, size_t *size)
{
    if (!path) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[load] NULL path.");
    FILE *f = fopen(path, "rb");
    if (!f) return pnC_fail(PN_ERR_IO, "[load] Cannot open %s: %s.", path, strerror(errno));
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            unsigned char *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[load] Out of memory reading %s.", path);
            }
            buf = b;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return pnC_fail(PN_ERR_IO, "[load] Error reading %s.", path);
    }
    *size = n;
    return buf;
}

int pnI_write_parts(const pn_writer *w, const void *const *parts, const size_t *sizes, int nparts)
{
    for (int i = 0; i < nparts; i++)
        if (sizes[i] && w->write(w->ctx, parts[i], sizes[i])) {
            if (!pnC_failed()) pn_set_error(PN_ERR_IO, "[save] The writer failed.");
            return -1;
        }
    return 0;
}

typedef struct {
    FILE *f;
    const char *path;
} file_sink;

static int file_write(void *ctx, const void *data, size_t n)
{
    file_sink *s = ctx;
    if (fwrite(data, 1, n, s->f) == n) return 0;
    return pn_set_error(PN_ERR_IO, "[save] Error writing %s: %s.", s->path, strerror(errno));
}

/* Runs emit(w, arg) with w writing to a temporary file beside path, which then replaces path
 * (nothing is left behind on failure). 0 or -1. */
static int write_atomically(const char *path, int (*emit)(const pn_writer *, const void *), const void *arg)
{
    if (!path) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[save] NULL path.");
    size_t len = strlen(path);
    char *tmp = malloc(len + 8);
    if (!tmp) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[save] Out of memory.");
    snprintf(tmp, len + 8, "%s.tmp", path);
    file_sink sink = {fopen(tmp, "wb"), path};
    if (!sink.f) {
        int e = errno;
        free(tmp);
        return pn_set_error(PN_ERR_IO, "[save] Cannot write %s: %s.", path, strerror(e));
    }
    int rc = emit(&(pn_writer){file_write, &sink}, arg);
    if (fclose(sink.f) != 0 && rc == 0) rc = pn_set_error(PN_ERR_IO, "[save] Error writing %s.", path);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = pn_set_error(PN_ERR_IO, "[save] Cannot write %s: %s.", path, strerror(errno));
    if (rc) remove(tmp);
    free(tmp);
    return rc;
}

typedef struct {
    const void *const *parts;
    const size_t *sizes;
    int n;
} parts_arg;

static int emit_parts(const pn_writer *w, const void *arg)
{
    const parts_arg *a = arg;
    return pnI_write_parts(w, a->parts, a->sizes, a->n);
}

int pnI_write_file(const char *path, const void *const *parts, const size_t *sizes, int nparts)
{
    return write_atomically(path, emit_parts, &(parts_arg){parts, sizes, nparts});
}

bool pnI_has_ext(const char *path, const char *ext)
{
    size_t n = strlen(path), k = strlen(ext);
    return n >= k && strcmp(path + n - k, ext) == 0;
}

/* ───────────────────────────── formats: one dispatch ───────────────────────────── */

int pn_save_to(const pn_writer *w, pn_file_format format, const pn_params *arrays,
               const pn_gguf_meta *metadata)
{
    if (!w || !w->write || !arrays) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[save] NULL writer or arrays.");
    switch (format) {
    case PN_FORMAT_NPY:
        if (pn_params_count(arrays) != 1)
            return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[save] An .npy file holds one array (got %d).",
                                pn_params_count(arrays));
        return pnI_save_npy(w, pn_params_at(arrays, 0));
    case PN_FORMAT_NPZ:
    case PN_FORMAT_NPZ_COMPRESSED: return pnI_save_npz(w, arrays, format == PN_FORMAT_NPZ_COMPRESSED);
    case PN_FORMAT_SAFETENSORS: return pnI_save_safetensors(w, arrays, metadata);
    case PN_FORMAT_GGUF: return pnI_save_gguf(w, arrays, metadata);
    }
    return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[save] Unknown file format %d.", (int)format);
}

/* pn_load_from with `what` naming the image in errors. */
static pn_params *load_image(const unsigned char *data, size_t size, pn_file_format format,
                             pn_gguf_meta **metadata, const char *what)
{
    if (metadata) *metadata = NULL;
    switch (format) {
    case PN_FORMAT_NPY: {
        pn_params *p = pn_params_new();
        if (!p) return NULL;
        pn_scope_push();
        pn_array *a = pnI_npy_parse(data, size, what);
        int rc = a ? pn_params_set(p, "", a) : -1;
        pn_scope_pop();
        if (rc) pn_params_free(p);
        return rc ? NULL : p;
    }
    case PN_FORMAT_NPZ:
    case PN_FORMAT_NPZ_COMPRESSED: return pnI_load_npz(data, size, what);
    case PN_FORMAT_SAFETENSORS: return pnI_load_safetensors(data, size, what, metadata);
    case PN_FORMAT_GGUF: return pnI_load_gguf(data, size, what, metadata);
    }
    return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[load] Unknown file format %d.", (int)format);
}

pn_params *pn_load_from(const void *data, size_t size, pn_file_format format, const char *name,
                        pn_gguf_meta **metadata)
{
    if (metadata) *metadata = NULL;
    if (!data && size) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[load] NULL data.");
    return load_image(data ? data : "", size, format, metadata, name ? name : "(a file in memory)");
}

/* ───────────────────────────── the path functions ───────────────────────────── */

typedef struct {
    pn_file_format format;
    const pn_params *arrays;
    const pn_gguf_meta *metadata;
} save_arg;

static int emit_format(const pn_writer *w, const void *arg)
{
    const save_arg *a = arg;
    return pn_save_to(w, a->format, a->arrays, a->metadata);
}

static int save_path(const char *path, pn_file_format format, const pn_params *p, const pn_gguf_meta *m)
{
    return write_atomically(path, emit_format, &(save_arg){format, p, m});
}

static pn_params *load_path(const char *path, pn_file_format format, pn_gguf_meta **metadata)
{
    if (metadata) *metadata = NULL;
    size_t size;
    unsigned char *buf = pnI_read_file(path, &size);
    if (!buf) return NULL;
    pn_params *p = load_image(buf, size, format, metadata, path);
    free(buf);
    return p;
}

int pn_save_params(const char *path, const pn_params *p)
{
    if (!path || !p) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[save] NULL path or tree.");
    if (pnI_has_ext(path, ".safetensors")) return save_path(path, PN_FORMAT_SAFETENSORS, p, NULL);
    if (pnI_has_ext(path, ".npz")) return save_path(path, PN_FORMAT_NPZ, p, NULL);
    return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                        "[save] Unknown file extension in %s (use .safetensors or .npz).", path);
}

int pn_save_safetensors(const char *path, const pn_params *p, const pn_gguf_meta *metadata)
{
    if (!path || !p) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[save_safetensors] NULL path or tree.");
    return save_path(path, PN_FORMAT_SAFETENSORS, p, metadata);
}

int pn_savez_compressed(const char *path, const pn_params *p)
{
    if (!path || !p) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[savez_compressed] NULL path or tree.");
    if (!pnI_has_ext(path, ".npz"))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[savez_compressed] %s does not end in .npz.", path);
    return save_path(path, PN_FORMAT_NPZ_COMPRESSED, p, NULL);
}

pn_params *pn_load_params(const char *path)
{
    if (!path) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[load] NULL path.");
    if (pnI_has_ext(path, ".safetensors")) return load_path(path, PN_FORMAT_SAFETENSORS, NULL);
    if (pnI_has_ext(path, ".npz")) return load_path(path, PN_FORMAT_NPZ, NULL);
    return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                    "[load] Unknown file extension in %s (use .safetensors or .npz).", path);
}

int pn_save_npy(const char *path, pn_array *a)
{
    if (!pnC_inputs_ok("save_npy", 1, &a)) return -1;
    pn_params *p = pn_params_new();
    int rc = p ? pn_params_set(p, "", a) : -1;
    if (rc == 0) rc = save_path(path, PN_FORMAT_NPY, p, NULL);
    pn_params_free(p);
    return rc;
}

pn_array *pn_load_npy(const char *path)
{
    size_t size;
    unsigned char *buf = pnI_read_file(path, &size);
    if (!buf) return NULL;
    pn_array *a = pnI_npy_parse(buf, size, path);
    free(buf);
    return a;
}

int pn_save_gguf(const char *path, const pn_params *arrays, const pn_gguf_meta *metadata)
{
    if (!path || !arrays) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[save_gguf] NULL path or arrays.");
    return save_path(path, PN_FORMAT_GGUF, arrays, metadata);
}

pn_params *pn_load_gguf(const char *path, pn_gguf_meta **metadata)
{
    return load_path(path, PN_FORMAT_GGUF, metadata);
}
