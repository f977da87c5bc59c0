/* sqrt_svd.h — the matrix square root behind multivariate_normal (SqrtSVD), one matrix at a
 * time in double: shared by the CPU kernel (cpu/random.c) and the GPU kernel (cuda/random.cu,
 * a thread per matrix), so both devices run the same sweeps. */
#ifndef PONTE_BACKEND_CPU_SQRT_SVD_H
#define PONTE_BACKEND_CPU_SQRT_SVD_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend/host_device.h"

/* r (n×n, row-major) = U·sqrt(S)·Vᵀ of a (n×n, row-major) with U·S·Vᵀ = a. Hestenes'
 * one-sided Jacobi: rotate column pairs of b = a·V until they are orthogonal; then
 * b = U·S, and U·sqrt(S)·Vᵀ = Σ_i b_i / sqrt(|b_i|) v_iᵀ. work holds 2·n² doubles. */
PNK_HD void pnK_sqrt_svd(int64_t n, const float *a, float *r, double *work)
{
    double *b = work, *v = work + n * n; /* both row-major: b[row*n + col] */
    for (int64_t i = 0; i < n * n; i++) {
        b[i] = a[i];
        v[i] = (i / n == i % n);
    }
    for (int sweep = 0; sweep < 64; sweep++) {
        bool rotated = false;
        for (int64_t p = 0; p < n - 1; p++) {
            for (int64_t q = p + 1; q < n; q++) {
                double alpha = 0, beta = 0, gamma = 0;
                for (int64_t k = 0; k < n; k++) {
                    double bp = b[k * n + p], bq = b[k * n + q];
                    alpha += bp * bp;
                    beta += bq * bq;
                    gamma += bp * bq;
                }
                if (!(fabs(gamma) > 1e-15 * sqrt(alpha * beta))) continue;
                rotated = true;
                double zeta = (beta - alpha) / (2 * gamma);
                double t = (zeta >= 0 ? 1.0 : -1.0) / (fabs(zeta) + sqrt(1 + zeta * zeta));
                double c = 1 / sqrt(1 + t * t), s = c * t;
                for (int64_t k = 0; k < n; k++) {
                    double bp = b[k * n + p], bq = b[k * n + q];
                    b[k * n + p] = c * bp - s * bq;
                    b[k * n + q] = s * bp + c * bq;
                    double vp = v[k * n + p], vq = v[k * n + q];
                    v[k * n + p] = c * vp - s * vq;
                    v[k * n + q] = s * vp + c * vq;
                }
            }
        }
        if (!rotated) break;
    }
    for (int64_t i = 0; i < n; i++) { /* scale column i of b by 1/sqrt(|b_i|) */
        double norm = 0;
        for (int64_t k = 0; k < n; k++) norm += b[k * n + i] * b[k * n + i];
        double scale = norm > 0 ? 1 / sqrt(sqrt(norm)) : 0;
        for (int64_t k = 0; k < n; k++) b[k * n + i] *= scale;
    }
    for (int64_t row = 0; row < n; row++) {
        for (int64_t col = 0; col < n; col++) {
            double acc = 0;
            for (int64_t i = 0; i < n; i++) acc += b[row * n + i] * v[col * n + i];
            r[row * n + col] = (float)acc;
        }
    }
}

#endif /* PONTE_BACKEND_CPU_SQRT_SVD_H */
