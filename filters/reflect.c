/*
 * filters/reflect.c — see reflect.h.
 */
#include "filters/reflect.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/base/pb.h"

#define MAX_NAME 1024

static int fail(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return -1;
}

/* A name from the upstream: printable ASCII, bounded (it ends up in logs
 * and in further requests). */
static char *name_dup(const uint8_t *p, size_t n)
{
    if (n == 0 || n > MAX_NAME)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x21 || p[i] > 0x7e)
            return NULL;
    char *s = malloc(n + 1);
    if (s != NULL) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

int tg_reflect_init(tg_reflect_t *r, const char *const *services, size_t n)
{
    memset(r, 0, sizeof(*r));
    if (n > 0) {
        if ((r->services = calloc(n, sizeof(char *))) == NULL)
            return -1;
        for (size_t i = 0; i < n; i++)
            if ((r->services[r->n_services++] = strdup(services[i])) == NULL)
                return -1;
        r->listed = 1;
    }
    return 0;
}

void tg_reflect_free(tg_reflect_t *r)
{
    free_names(r->services, r->n_services);
    free_names(r->asked, r->n_asked);
    for (size_t i = 0; i < r->n_files; i++) {
        free(r->files[i].name);
        free(r->files[i].bytes);
    }
    free(r->files);
    memset(r, 0, sizeof(*r));
}

static const tg_reflect_file_t *file_named(const tg_reflect_t *r, const char *name, size_t len)
{
    for (size_t i = 0; i < r->n_files; i++)
        if (strlen(r->files[i].name) == len && memcmp(r->files[i].name, name, len) == 0)
            return &r->files[i];
    return NULL;
}

/* The imports of the files gathered that are not among them (each once),
 * into r->asked. -1: out of memory or a malformed file. */
static int missing(tg_reflect_t *r, char *why, size_t cap)
{
    free_names(r->asked, r->n_asked);
    r->asked = NULL;
    r->n_asked = 0;
    size_t cap_asked = 0;
    for (size_t i = 0; i < r->n_files; i++) {
        tg_pb_reader_t rd = tg_pb_reader(r->files[i].bytes, r->files[i].len);
        tg_pb_field_t f;
        int rc;
        while ((rc = tg_pb_next(&rd, &f)) > 0) {
            if (f.num != 3 || f.wire != TG_PB_LEN || file_named(r, (const char *)f.data, f.len))
                continue;
            int dup = 0;
            for (size_t k = 0; k < r->n_asked && !dup; k++)
                dup = strlen(r->asked[k]) == f.len && memcmp(r->asked[k], f.data, f.len) == 0;
            if (dup)
                continue;
            char *name = name_dup(f.data, f.len);
            if (name == NULL)
                return fail(why, cap, "file %s imports a name that is not text", r->files[i].name);
            if (r->n_asked == cap_asked) {
                size_t nc = cap_asked ? cap_asked * 2 : 8;
                char **nv = realloc(r->asked, nc * sizeof(char *));
                if (nv == NULL) {
                    free(name);
                    return fail(why, cap, "out of memory");
                }
                r->asked = nv;
                cap_asked = nc;
            }
            r->asked[r->n_asked++] = name;
        }
        if (rc < 0)
            return fail(why, cap, "file %s is not a FileDescriptorProto", r->files[i].name);
    }
    return 0;
}

/* Appends one framed ServerReflectionRequest with string field `field`. */
static void request(tg_pb_writer_t *w, uint32_t field, const char *value)
{
    size_t mark = tg_pb_frame_begin(w);
    tg_pb_str(w, field, value);
    (void)tg_pb_frame_end(w, mark); /* a failure stays in w->failed */
}

int tg_reflect_next(tg_reflect_t *r, uint8_t **body, size_t *len, char *why, size_t cap)
{
    *body = NULL;
    *len = 0;
    if (r->listed && r->symbols_asked && r->n_asked == 0)
        return 0;
    if (++r->rounds > TG_REFLECT_MAX_ROUNDS)
        return fail(why, cap, "more than %d rounds of imports", TG_REFLECT_MAX_ROUNDS);
    tg_pb_writer_t w = { 0 };
    if (!r->listed) {
        request(&w, 7, "*");
    } else if (!r->symbols_asked) {
        for (size_t i = 0; i < r->n_services; i++)
            request(&w, 4, r->services[i]);
    } else {
        for (size_t i = 0; i < r->n_asked; i++)
            request(&w, 3, r->asked[i]);
    }
    if (w.failed) {
        tg_pb_writer_free(&w);
        return fail(why, cap, "out of memory");
    }
    *body = w.p;
    *len = w.len;
    return 1;
}

static int is_reflection(const char *s)
{
    return strcmp(s, "grpc.reflection.v1.ServerReflection") == 0 ||
           strcmp(s, "grpc.reflection.v1alpha.ServerReflection") == 0;
}

static int add_service(tg_reflect_t *r, const uint8_t *p, size_t n, char *why, size_t cap)
{
    tg_pb_reader_t rd = tg_pb_reader(p, n);
    tg_pb_field_t f;
    int rc;
    while ((rc = tg_pb_next(&rd, &f)) > 0) {
        if (f.num != 1 || f.wire != TG_PB_LEN)
            continue;
        tg_pb_reader_t sr = tg_pb_reader(f.data, f.len); /* a ServiceResponse: its name */
        tg_pb_field_t g;
        char *name = NULL;
        int src;
        while ((src = tg_pb_next(&sr, &g)) > 0)
            if (g.num == 1 && g.wire == TG_PB_LEN && name == NULL && (name = name_dup(g.data, g.len)) == NULL)
                return fail(why, cap, "a listed service name is not text");
        if (src < 0 || name == NULL) {
            free(name);
            return fail(why, cap, "a malformed service in the list");
        }
        if (is_reflection(name) || r->n_services >= TG_REFLECT_MAX_FILES) {
            free(name);
            continue;
        }
        char **nv = realloc(r->services, (r->n_services + 1) * sizeof(char *));
        if (nv == NULL) {
            free(name);
            return fail(why, cap, "out of memory");
        }
        r->services = nv;
        r->services[r->n_services++] = name;
    }
    return rc < 0 ? fail(why, cap, "a malformed service list") : 0;
}

static int add_files(tg_reflect_t *r, const uint8_t *p, size_t n, char *why, size_t cap)
{
    tg_pb_reader_t rd = tg_pb_reader(p, n);
    tg_pb_field_t f;
    int rc;
    while ((rc = tg_pb_next(&rd, &f)) > 0) {
        if (f.num != 1 || f.wire != TG_PB_LEN)
            continue;
        const uint8_t *name = NULL;
        size_t name_len = 0;
        tg_pb_reader_t fd = tg_pb_reader(f.data, f.len);
        tg_pb_field_t g;
        int frc;
        while ((frc = tg_pb_next(&fd, &g)) > 0)
            if (g.num == 1 && g.wire == TG_PB_LEN) {
                name = g.data;
                name_len = g.len;
            }
        if (frc < 0 || name == NULL)
            return fail(why, cap, "a file descriptor that is malformed or has no name");
        if (file_named(r, (const char *)name, name_len))
            continue; /* sent again with another file's imports */
        if (r->n_files >= TG_REFLECT_MAX_FILES || r->bytes + f.len > TG_REFLECT_MAX_BYTES)
            return fail(why, cap, "more than %d files or %u MiB of descriptors", TG_REFLECT_MAX_FILES,
                        TG_REFLECT_MAX_BYTES >> 20);
        if (r->n_files == r->cap_files) {
            size_t nc = r->cap_files ? r->cap_files * 2 : 16;
            tg_reflect_file_t *nv = realloc(r->files, nc * sizeof(*nv));
            if (nv == NULL)
                return fail(why, cap, "out of memory");
            r->files = nv;
            r->cap_files = nc;
        }
        tg_reflect_file_t *file = &r->files[r->n_files];
        if ((file->name = name_dup(name, name_len)) == NULL)
            return fail(why, cap, "a file name that is not text");
        if ((file->bytes = malloc(f.len ? f.len : 1)) == NULL) {
            free(file->name);
            return fail(why, cap, "out of memory");
        }
        memcpy(file->bytes, f.data, f.len);
        file->len = f.len;
        r->bytes += f.len;
        r->n_files++;
    }
    return rc < 0 ? fail(why, cap, "a malformed file descriptor response") : 0;
}

/* An ErrorResponse, said with what it answered (original_request). */
static int error_response(const uint8_t *p, size_t n, const uint8_t *orig, size_t orig_len, char *why, size_t cap)
{
    uint64_t code = 0;
    const uint8_t *msg = NULL, *what = NULL;
    size_t msg_len = 0, what_len = 0;
    tg_pb_reader_t rd = tg_pb_reader(p, n);
    tg_pb_field_t f;
    while (tg_pb_next(&rd, &f) > 0) {
        if (f.num == 1 && f.wire == TG_PB_VARINT)
            code = f.v;
        else if (f.num == 2 && f.wire == TG_PB_LEN)
            msg = f.data, msg_len = f.len;
    }
    rd = tg_pb_reader(orig, orig_len);
    while (tg_pb_next(&rd, &f) > 0)
        if ((f.num == 3 || f.num == 4) && f.wire == TG_PB_LEN)
            what = f.data, what_len = f.len;
    char *w = what ? name_dup(what, what_len) : NULL, *m = msg ? name_dup(msg, msg_len) : NULL;
    fail(why, cap, "%s: error %llu%s%s", w ? w : "a request", (unsigned long long)code, msg ? ": " : "",
         msg ? (m ? m : "(not printable)") : "");
    free(w);
    free(m);
    return -1;
}

int tg_reflect_answer(tg_reflect_t *r, const void *body, size_t len, char *why, size_t cap)
{
    const uint8_t *p = body, *end = p + len;
    size_t answers = 0;
    while (p < end) {
        if (end - p < 5)
            return fail(why, cap, "a cut gRPC frame");
        if (p[0] != 0)
            return fail(why, cap, "a compressed or unknown gRPC frame");
        size_t n = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
        if ((size_t)(end - p - 5) < n)
            return fail(why, cap, "a cut gRPC frame");
        const uint8_t *msg = p + 5;
        p += 5 + n;
        answers++;
        tg_pb_reader_t rd = tg_pb_reader(msg, n);
        tg_pb_field_t f;
        const uint8_t *orig = NULL;
        size_t orig_len = 0;
        int rc;
        while ((rc = tg_pb_next(&rd, &f)) > 0) {
            if (f.wire != TG_PB_LEN)
                continue;
            if (f.num == 2) {
                orig = f.data;
                orig_len = f.len;
            } else if (f.num == 4) {
                if (add_files(r, f.data, f.len, why, cap) < 0)
                    return -1;
            } else if (f.num == 6) {
                if (r->listed)
                    return fail(why, cap, "a service list nobody asked for");
                if (add_service(r, f.data, f.len, why, cap) < 0)
                    return -1;
            } else if (f.num == 7) {
                return error_response(f.data, f.len, orig, orig_len, why, cap);
            }
        }
        if (rc < 0)
            return fail(why, cap, "a malformed ServerReflectionResponse");
    }
    if (answers == 0)
        return fail(why, cap, "no answer");
    if (!r->listed) {
        r->listed = 1;
        if (r->n_services == 0)
            return fail(why, cap, "the server lists no service but reflection");
        return 0;
    }
    r->symbols_asked = 1;
    size_t was_asked = r->n_asked;
    char **asked = r->asked;
    r->asked = NULL;
    r->n_asked = 0;
    int rc = missing(r, why, cap);
    if (rc == 0)
        for (size_t i = 0; i < r->n_asked && rc == 0; i++)
            for (size_t k = 0; k < was_asked && rc == 0; k++)
                if (strcmp(r->asked[i], asked[k]) == 0) /* asked for, not sent: it would loop */
                    rc = fail(why, cap, "file %s: asked for, not sent", asked[k]);
    free_names(asked, was_asked);
    return rc;
}

int tg_reflect_set(const tg_reflect_t *r, uint8_t **out, size_t *len)
{
    tg_pb_writer_t w = { 0 };
    for (size_t i = 0; i < r->n_files; i++)
        tg_pb_bytes(&w, 1, r->files[i].bytes, r->files[i].len);
    if (w.failed) {
        tg_pb_writer_free(&w);
        return -1;
    }
    *out = w.p;
    *len = w.len;
    return 0;
}
