/* device_info.c — pn_get_device_info: what mlx.core.device_info reports, for the CPU (model
 * name from /proc/cpuinfo, machine from uname, memory from sysconf) and for the GPU through
 * the CUDA runtime (the simulated one included). */
#include "core.h"
#include "backend/cuda/gpu.h"

#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

/* The CPU's model name ("model name" on x86, "Model"/"CPU part" elsewhere), or "" . */
static void cpu_name(char *out, size_t n)
{
    static const char *keys[] = {"model name", "Model", "Hardware", "cpu model"};
    char line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    out[0] = 0;
    if (!f) return;
    while (!out[0] && fgets(line, sizeof line, f)) {
        for (size_t k = 0; k < sizeof keys / sizeof *keys && !out[0]; k++) {
            size_t kl = strlen(keys[k]);
            char *colon = strchr(line, ':');
            if (!colon || strncmp(line, keys[k], kl) || (line[kl] != ' ' && line[kl] != '\t' && line[kl] != ':'))
                continue;
            char *v = colon + 1;
            while (*v == ' ' || *v == '\t') v++;
            size_t len = strcspn(v, "\n");
            while (len > 0 && v[len - 1] == ' ') len--;
            snprintf(out, n, "%.*s", (int)len, v);
        }
    }
    fclose(f);
}

/* pn_get_device_info: see ponte.h. */
int pn_get_device_info(pn_device d, pn_device_info *info)
{
    if (!info) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[device_info] info is NULL.");
    memset(info, 0, sizeof *info);
    if (!pn_is_available(d))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[device_info] The %s is not available.",
                            d.type == PN_GPU ? "GPU" : "device");
    if (d.type == PN_CPU) {
        struct utsname u;
        cpu_name(info->name, sizeof info->name);
        if (uname(&u) == 0) snprintf(info->architecture, sizeof info->architecture, "%.63s", u.machine);
        long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGESIZE);
        if (pages > 0 && size > 0) info->memory_size = (uint64_t)pages * (uint64_t)size;
        if (avail > 0 && size > 0) info->free_memory = (uint64_t)avail * (uint64_t)size;
        return 0;
    }
#ifdef PONTE_HAS_GPU
    int major = 0, minor = 0;
    if (pnG_device_info(d.index, info->name, sizeof info->name, &major, &minor, &info->memory_size,
                        &info->free_memory) == 0) {
        snprintf(info->architecture, sizeof info->architecture, "sm_%d%d", major, minor);
        return 0;
    }
#endif
    return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[device_info] The GPU is not available.");
}
