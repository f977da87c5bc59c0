/* test_device_info.c — pn_get_device_info (the CPU from the operating system, the GPU through
 * the CUDA runtime or the simulated one) and pn_random_state (the global key as seeded and
 * advanced by keyless draws). */
#include "harness.h"

#include <string.h>
#include <sys/utsname.h>

TEST(device_info_cpu)
{
    pn_scope_push();
    pn_device_info info;
    struct utsname u;
    CHECK(pn_get_device_info((pn_device){PN_CPU, 0}, &info) == 0);
    CHECK(uname(&u) == 0 && strncmp(info.architecture, u.machine, sizeof info.architecture - 1) == 0);
    CHECK(info.memory_size > 0 && info.free_memory > 0 && info.free_memory <= info.memory_size);
    CHECK(strlen(info.name) < sizeof info.name);
    CHECK(pn_get_device_info((pn_device){PN_CPU, 0}, NULL) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_scope_pop();
}

TEST(device_info_gpu)
{
    pn_scope_push();
    pn_device_info info;
    int rc = pn_get_device_info((pn_device){PN_GPU, 0}, &info);
    if (!pn_gpu_available()) {
        CHECK(rc == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
        CHECK(info.name[0] == 0 && info.memory_size == 0);
        pn_clear_error();
    } else {
        CHECK(rc == 0);
        CHECK(info.name[0] != 0);
        CHECK(strncmp(info.architecture, "sm_", 3) == 0 && info.architecture[3] >= '8');
        CHECK(info.memory_size > 0 && info.free_memory <= info.memory_size);
    }
    pn_scope_pop();
}

/* The key after one keyless draw: the first half of bits((2, 2)) of the seeded key. */
TEST(random_state)
{
    pn_scope_push();
    const uint64_t seeds[] = {0, 3, (1ull << 40) + 7};
    for (int s = 0; s < 3; s++) {
        pn_random_seed(seeds[s]);
        pn_array *k = pn_random_state();
        CHECK_OK(k);
        CHECK(pn_array_dtype(k) == PN_UINT32 && pn_ndim(k) == 1 && pn_dim(k, 0) == 2);
        uint32_t v[2];
        CHECK(pn_to_host(k, v, sizeof v) == 0);
        CHECK(v[0] == (uint32_t)(seeds[s] >> 32) && v[1] == (uint32_t)seeds[s]);
        const int64_t shape[2] = {2, 2};
        pn_array *bits = pn_random_bits(shape, 2, 4, pn_random_key(seeds[s]));
        uint32_t b[4];
        CHECK(pn_to_host(bits, b, sizeof b) == 0);
        int64_t one = 1;
        pn_array *draw = pn_random_bits(&one, 1, 4, NULL); /* advances the global key */
        CHECK_OK(draw);
        uint32_t w[2];
        CHECK(pn_to_host(pn_random_state(), w, sizeof w) == 0);
        CHECK_MSG(w[0] == b[0] && w[1] == b[1], "seed %llu: state %u %u, expected %u %u",
                  (unsigned long long)seeds[s], w[0], w[1], b[0], b[1]);
    }
    pn_scope_pop();
}
