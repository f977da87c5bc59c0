/* rtc_headers.h — the headers a kernel generated at run time may include, as the library
 * carries them (the file defining these is generated at build time by
 * cmake/embed_rtc_headers.cmake from the listed sources, so NVRTC never needs the source tree):
 * pnG_rtc_header_texts[i] is the text of the header included as pnG_rtc_header_names[i]. */
#ifndef PONTE_BACKEND_CUDA_RTC_HEADERS_H
#define PONTE_BACKEND_CUDA_RTC_HEADERS_H

#ifdef __cplusplus
extern "C" {
#endif

extern const int pnG_rtc_header_count;
extern const char *const pnG_rtc_header_names[];
extern const char *const pnG_rtc_header_texts[];

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_RTC_HEADERS_H */
