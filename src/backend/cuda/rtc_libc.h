/* rtc_libc.h — the C library as NVRTC sees it when it compiles Ponte's own headers into a
 * generated kernel (fused.c): NVRTC has no libc, so this one header is handed to it under the
 * name of every libc header those headers include (stdint.h, stddef.h, math.h, ...). It
 * declares only what they use in device code; the math functions are NVRTC's built-ins. */
#ifndef PONTE_BACKEND_CUDA_RTC_LIBC_H
#define PONTE_BACKEND_CUDA_RTC_LIBC_H

typedef signed char int8_t;
typedef short int16_t;
typedef int int32_t;
typedef long long int64_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
typedef long long intptr_t;
typedef unsigned long long uintptr_t;
typedef unsigned long size_t;
typedef long ptrdiff_t;
typedef struct _IO_FILE FILE;

#define INT8_MIN (-128)
#define INT8_MAX 127
#define UINT8_MAX 255
#define INT16_MIN (-32768)
#define INT16_MAX 32767
#define UINT16_MAX 65535
#define INT32_MIN (-2147483647 - 1)
#define INT32_MAX 2147483647
#define UINT32_MAX 4294967295u
#define INT64_MIN (-9223372036854775807LL - 1)
#define INT64_MAX 9223372036854775807LL
#define UINT64_MAX 18446744073709551615ull
#ifndef NULL
#define NULL 0
#endif

#define NAN __int_as_float(0x7fc00000)
#define INFINITY __int_as_float(0x7f800000)
#define FLT_MAX 3.402823466e+38F
#define DBL_MAX 1.7976931348623158e+308

#endif /* PONTE_BACKEND_CUDA_RTC_LIBC_H */
