/* quickstart.c — the README's first program: a lazy expression, its gradient, and printing.
 * Build: cc quickstart.c $(pkg-config --cflags --libs ponte)  (or `make examples`). */
#include <ponte.h>
#include <stdio.h>

/* f(x) = sum(sin(x) * x) */
static int f(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_sum(pn_multiply(pn_sin(in[0]), in[0]), NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

int main(void)
{
    pn_scope_push(); /* everything created below is released at the pop */
    float data[4] = {0.0f, 0.5f, 1.0f, 2.0f};
    pn_array *x = pn_array_from_data(data, (int64_t[]){4}, 1, PN_FLOAT32);

    pn_closure *fn = pn_closure_new(f, NULL, NULL);
    pn_closure *df = pn_grad(fn, NULL, 0); /* d/dx sum(sin(x) x) = cos(x) x + sin(x) */
    pn_array *g = NULL;
    int n = 1;
    if (pn_closure_call(df, 1, &x, &n, &g) != 0) {
        fprintf(stderr, "error: %s\n", pn_last_error_message());
        return 1;
    }
    pn_print(stdout, g); /* evaluates g */
    pn_closure_release(df);
    pn_closure_release(fn);
    pn_scope_pop();
    return 0;
}
