/*
 * proxy/base/siphash.h — SipHash-2-4 (Aumasson and Bernstein), the keyed hash
 * for tables whose keys a client chooses: without the 128-bit secret key,
 * nobody can aim many keys at one bucket or one lock. Pure function.
 */
#ifndef TG_BASE_SIPHASH_H
#define TG_BASE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct tg_siphash_key {
    uint64_t k0, k1;
} tg_siphash_key_t;

uint64_t tg_siphash(const tg_siphash_key_t *key, const void *data, size_t len);

/* A fresh random key from the kernel (getrandom); 0, or -1 if none. */
int tg_siphash_random_key(tg_siphash_key_t *key);

#endif
