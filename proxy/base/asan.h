/*
 * proxy/base/asan.h — TG_ASAN is defined when the build runs under
 * AddressSanitizer (GCC's __SANITIZE_ADDRESS__ or clang's feature test).
 * Memory caches (mem.c, slab.c) turn themselves off then, so that the
 * sanitizer sees every allocation and every free.
 */
#ifndef TG_BASE_ASAN_H
#define TG_BASE_ASAN_H

#if defined(__SANITIZE_ADDRESS__)
#define TG_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TG_ASAN 1
#endif
#endif

#endif
