/*
 * filters/reflect.h — gRPC server reflection (grpc.reflection.v1 and
 * v1alpha, the same messages), as a client: the rounds of requests that
 * bring a service's descriptors, and the FileDescriptorSet they make.
 * No I/O: the caller sends each round's body as one call of
 * ServerReflectionInfo (a bidi stream, half-closed after the requests:
 * servers answer each request in order) and hands the answer back.
 *
 *   round 1  list_services (skipped when the services are given)
 *   round 2  file_containing_symbol for each service
 *   round 3+ file_by_filename for each dependency not yet seen (servers
 *            differ: some send a file's imports with it, some not)
 *
 * The upstream is not trusted: every answer is read through pb.h's
 * checked reader, and the rounds, files and bytes are bounded.
 */
#ifndef TG_FILTERS_REFLECT_H
#define TG_FILTERS_REFLECT_H

#include <stddef.h>
#include <stdint.h>

#define TG_REFLECT_V1 "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
#define TG_REFLECT_V1ALPHA "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"

#define TG_REFLECT_MAX_ROUNDS 32
#define TG_REFLECT_MAX_FILES 4096
#define TG_REFLECT_MAX_BYTES (64u << 20)

typedef struct tg_reflect_file {
    char *name;
    uint8_t *bytes;             /* a serialized FileDescriptorProto */
    size_t len;
} tg_reflect_file_t;

typedef struct tg_reflect {
    char **services;            /* wanted: given, or listed by the server */
    size_t n_services;
    int listed;                 /* the services are known */
    int symbols_asked;          /* round 2 went */
    tg_reflect_file_t *files;
    size_t n_files, cap_files;
    char **asked;               /* the file names of the last round (file_by_filename) */
    size_t n_asked;
    size_t bytes;               /* of all files */
    unsigned rounds;
} tg_reflect_t;

/* services: the full names wanted (copied), or n == 0 for every service
 * the server lists but reflection itself. 0, or -1 (out of memory). */
int tg_reflect_init(tg_reflect_t *r, const char *const *services, size_t n);
void tg_reflect_free(tg_reflect_t *r);

/* The next round's request body (gRPC frames, one request each) into
 * *body (malloc'ed, the caller frees): 1; 0 when the descriptors are
 * complete; -1 with the reason in why (too many rounds, out of memory). */
int tg_reflect_next(tg_reflect_t *r, uint8_t **body, size_t *len, char *why, size_t cap);

/* The answer to the last round: the response stream's body (gRPC
 * frames). 0, or -1 with the reason in why (a malformed answer, an
 * error response, a limit passed). */
int tg_reflect_answer(tg_reflect_t *r, const void *body, size_t len, char *why, size_t cap);

/* The FileDescriptorSet of every file gathered (malloc'ed). 0 or -1. */
int tg_reflect_set(const tg_reflect_t *r, uint8_t **out, size_t *len);

#endif
