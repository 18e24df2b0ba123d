/*
 * config/value.h — parsing of scalar config values: durations ("250ms",
 * "5s", "1m", "1h"), sizes ("512", "64KiB", "10MiB", "1GiB"), host:port
 * addresses and ${VAR} environment expansion. Pure functions, no I/O
 * besides getenv(); used by the YAML loader and by the unit tests.
 */
#ifndef TG_CONFIG_VALUE_H
#define TG_CONFIG_VALUE_H

#include <stddef.h>
#include <stdint.h>

/* Parses a duration into milliseconds. Returns 0, or -1 on a malformed
 * value (units: ms, s, m, h; a bare "0" is allowed). */
int tg_parse_duration_ms(const char *s, uint64_t *out_ms);

/* Parses a size into bytes (units: B, KiB, MiB, GiB, also KB/MB/GB as
 * powers of 1000; a bare number is bytes). Returns 0 or -1. */
int tg_parse_size(const char *s, uint64_t *out);

/* Splits "host:port" or "[v6]:port" into host and port. host must have
 * room for hostcap bytes. Returns 0 or -1. */
int tg_parse_hostport(const char *s, char *host, size_t hostcap, uint16_t *port);

/* An address block: "10.0.0.0/8", "2001:db8::/32"; a bare address is
 * a block of one. */
typedef struct tg_cidr {
    uint8_t family;      /* 4 or 6 */
    uint8_t bits;        /* prefix length */
    uint8_t addr[16];    /* network byte order; IPv4 in the first 4 bytes */
} tg_cidr_t;

/* Parses a CIDR block (host bits must be zero). Returns 0 or -1. */
int tg_parse_cidr(const char *s, tg_cidr_t *out);

/* Parses a textual IPv4 or IPv6 address (IPv4-mapped IPv6 counts as
 * IPv4) and reports whether any block of the list holds it. */
int tg_cidr_list_match(const tg_cidr_t *v, size_t n, const char *addr);

/* Expands every ${NAME} in s from the environment. Returns a malloc'ed
 * string (caller frees), or NULL with *err_var set to a malloc'ed copy of
 * the first unset variable name (or NULL for a syntax error / OOM). */
char *tg_expand_env(const char *s, char **err_var);

#endif
