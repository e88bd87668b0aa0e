/* error.c: the per-thread error message behind MT_FAIL and mt_last_error(). */
#include <stdarg.h>
#include <stdio.h>

#include "mt_common.h"

static __thread char mt_error_message[512];

void mt_set_error(const char *file, int line, const char *fmt, ...)
{
    int n = snprintf(mt_error_message, sizeof mt_error_message, "%s:%d: ", file, line);
    if (n < 0 || n >= (int)sizeof mt_error_message) return;
    va_list args;
    va_start(args, fmt);
    vsnprintf(mt_error_message + n, sizeof mt_error_message - n, fmt, args);
    va_end(args);
}

const char *mt_last_error(void) { return mt_error_message; }
