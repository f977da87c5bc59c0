/* files.c — whole-file reading and atomic writing for the formats, and the dispatch of
 * pn_save_params / pn_load_params by file extension. */
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

int pnI_write_file(const char *path, const void *const *parts, const size_t *sizes, int nparts)
{
    if (!path) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[save] NULL path.");
    size_t len = strlen(path);
    char *tmp = malloc(len + 8);
    if (!tmp) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[save] Out of memory.");
    snprintf(tmp, len + 8, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        free(tmp);
        return pn_set_error(PN_ERR_IO, "[save] Cannot write %s: %s.", path, strerror(e));
    }
    bool ok = true;
    for (int i = 0; i < nparts && ok; i++)
        ok = sizes[i] == 0 || fwrite(parts[i], 1, sizes[i], f) == sizes[i];
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        free(tmp);
        return pn_set_error(PN_ERR_IO, "[save] Error writing %s.", path);
    }
    free(tmp);
    return 0;
}

bool pnI_has_ext(const char *path, const char *ext)
{
    size_t n = strlen(path), k = strlen(ext);
    return n >= k && strcmp(path + n - k, ext) == 0;
}

int pn_save_params(const char *path, const pn_params *p)
{
    if (!path || !p) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[save] NULL path or tree.");
    if (pnI_has_ext(path, ".safetensors")) return pnI_save_safetensors(path, p);
    if (pnI_has_ext(path, ".npz")) return pnI_save_npz(path, p, false);
    return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                        "[save] Unknown file extension in %s (use .safetensors or .npz).", path);
}

int pn_savez_compressed(const char *path, const pn_params *p)
{
    if (!path || !p) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[savez_compressed] NULL path or tree.");
    if (!pnI_has_ext(path, ".npz"))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[savez_compressed] %s does not end in .npz.", path);
    return pnI_save_npz(path, p, true);
}

pn_params *pn_load_params(const char *path)
{
    if (!path) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[load] NULL path.");
    if (pnI_has_ext(path, ".safetensors")) return pnI_load_safetensors(path);
    if (pnI_has_ext(path, ".npz")) return pnI_load_npz(path);
    return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                    "[load] Unknown file extension in %s (use .safetensors or .npz).", path);
}
