/*
 * tests/integration/apps/alloc_count.c — an LD_PRELOAD library that
 * counts heap allocations (malloc, calloc, realloc, aligned allocations)
 * of the process it is loaded into, and the bytes it copies with memcpy
 * and memmove (calls through the C library: copies a compiler inlined, of
 * a few constant bytes, are not seen), for test_allocations.py and
 * bench/profile.py. SIGWINCH writes "ALLOCATIONS BYTES_COPIED" so far to
 * $ALLOC_COUNT_FILE. Not part of tollgate.
 *
 *   cc -O2 -shared -fPIC -o alloc_count.so alloc_count.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

static _Atomic unsigned long long count, copied;
static void *(*real_memcpy)(void *, const void *, size_t), *(*real_memmove)(void *, const void *, size_t);
static void *(*real_malloc)(size_t), *(*real_calloc)(size_t, size_t), *(*real_realloc)(void *, size_t);
static int (*real_memalign)(void **, size_t, size_t);

/* dlsym itself may call calloc before real_calloc is known: a small static pool */
static char pool[4096];
static size_t pool_used;

static void on_signal(int sig)
{
    (void)sig;
    const char *path = getenv("ALLOC_COUNT_FILE");
    if (path == NULL)
        return;
    char buf[64], *p = buf + sizeof(buf);
    unsigned long long v = atomic_load(&copied);
    *--p = '\n';
    do
        *--p = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    *--p = ' ';
    v = atomic_load(&count);
    do
        *--p = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, p, (size_t)(buf + sizeof(buf) - p));
        (void)w;
        close(fd);
    }
}

__attribute__((constructor)) static void init(void)
{
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real_memcpy = dlsym(RTLD_NEXT, "memcpy");
    real_memmove = dlsym(RTLD_NEXT, "memmove");
    struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
    sigaction(SIGWINCH, &sa, NULL);
}

void *malloc(size_t n)
{
    if (real_malloc == NULL)
        init();
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    return real_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    if (real_calloc == NULL) {
        size_t n = (a * b + 15) & ~(size_t)15;
        if (pool_used + n > sizeof(pool))
            return NULL;
        void *p = pool + pool_used;
        pool_used += n;
        return p;
    }
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    return real_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    if (real_realloc == NULL)
        init();
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    return real_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (real_memalign == NULL)
        init();
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    return real_memalign(out, align, n);
}

void free(void *p)
{
    static void (*real_free)(void *);
    if ((char *)p >= pool && (char *)p < pool + sizeof(pool))
        return;
    if (real_free == NULL)
        real_free = dlsym(RTLD_NEXT, "free");
    real_free(p);
}

void *memcpy(void *dst, const void *src, size_t n)
{
    atomic_fetch_add_explicit(&copied, n, memory_order_relaxed);
    if (real_memcpy == NULL) { /* before the constructor: byte by byte */
        unsigned char *d = dst;
        const unsigned char *s = src;
        while (n--)
            *d++ = *s++;
        return dst;
    }
    return real_memcpy(dst, src, n);
}

void *memmove(void *dst, const void *src, size_t n)
{
    atomic_fetch_add_explicit(&copied, n, memory_order_relaxed);
    if (real_memmove == NULL) {
        unsigned char *d = dst;
        const unsigned char *s = src;
        if (d < s)
            while (n--)
                *d++ = *s++;
        else
            while (n--)
                d[n] = s[n];
        return dst;
    }
    return real_memmove(dst, src, n);
}
