/* error.c — the thread-local error: a kind and a message. The first error sticks until
 * pn_clear_error, so a chain of ops needs one check at its end. */
#include "core.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local pn_error_kind error_kind = PN_OK;
static _Thread_local char error_message[1024];

pn_error_kind pn_last_error(void) { return error_kind; }
const char *pn_last_error_message(void) { return error_kind == PN_OK ? "" : error_message; }
bool pnC_failed(void) { return error_kind != PN_OK; }

void pn_clear_error(void)
{
    error_kind = PN_OK;
    error_message[0] = 0;
}

static void set_error_v(pn_error_kind kind, const char *fmt, va_list ap)
{
    if (error_kind != PN_OK) return; /* the first error is the informative one */
    error_kind = kind == PN_OK ? PN_ERR_BACKEND : kind;
    vsnprintf(error_message, sizeof error_message, fmt, ap);
}

int pn_set_error(pn_error_kind kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error_v(kind, fmt, ap);
    va_end(ap);
    return -1;
}

void *pnC_fail(pn_error_kind kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error_v(kind, fmt, ap);
    va_end(ap);
    return NULL;
}

bool pnC_inputs_ok(const char *op, int n, pn_array *const *arrays)
{
    for (int i = 0; i < n; i++) {
        if (!arrays[i]) {
            if (error_kind == PN_OK)
                pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Input %d is a NULL array.", op, i);
            return false;
        }
    }
    return true;
}
