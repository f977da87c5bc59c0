/* io.h — shared pieces of the file formats: dtype codes and whole-file reading with limits.
 * Every reader treats its input as hostile: sizes and offsets are checked before use. */
#ifndef PONTE_IO_H
#define PONTE_IO_H

#include "core/core.h"

/* Reads the whole file into a malloc'd buffer. Returns NULL with PN_ERR_IO. */
unsigned char *pnI_read_file(const char *path, size_t *size);
/* Writes n bytes to path atomically (temporary file, then rename). Returns 0 or -1. */
int pnI_write_file(const char *path, const void *const *parts, const size_t *sizes, int nparts);
/* Whether path ends with ext (".npz"). */
bool pnI_has_ext(const char *path, const char *ext);

int pnI_save_safetensors(const char *path, const pn_params *p);
pn_params *pnI_load_safetensors(const char *path);
int pnI_save_npz(const char *path, const pn_params *p);
pn_params *pnI_load_npz(const char *path);
/* An .npy image in memory: parse (hostile) / build (malloc'd). */
pn_array *pnI_npy_parse(const unsigned char *data, size_t size, const char *what);
unsigned char *pnI_npy_build(pn_array *a, size_t *size);

#endif
