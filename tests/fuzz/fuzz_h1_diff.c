/* Differential fuzz target: a message parsed whole, split at random
 * points, and (when short) fed one byte at a time must give the same
 * result: the same status, bytes consumed, head fields, body and
 * trailers. The incremental parser resumes in every state, so any
 * disagreement is a state that does not resume correctly.
 * Input: [flags][seed][message]; flags bit 0: response, bit 1: response
 * to HEAD, bit 2: the peer closes after the message. */
#include <stdlib.h>

#include "h1_drive.h"

static int same(const h1_outcome_t *a, const h1_outcome_t *b)
{
    return a->status == b->status && a->consumed == b->consumed && a->body_len == b->body_len &&
           a->digest == b->digest && a->nfields == b->nfields && a->ntrailers == b->ntrailers;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3 || size > 8192)
        return 0;
    tg_h1_kind_t kind = (data[0] & 1) ? TG_H1_RESPONSE : TG_H1_REQUEST;
    int head_req = (data[0] & 2) != 0, eof = (data[0] & 4) != 0;
    uint32_t seed = data[1] * 2654435761u + 1;
    data += 2;
    size -= 2;
    size_t *cuts = malloc((size + 1) * sizeof(*cuts));
    if (cuts == NULL)
        return 0;
    h1_outcome_t whole, split;
    cuts[0] = size;
    h1_drive(kind, head_req, eof, data, size, cuts, 1, &whole);

    size_t n = 0, at = 0;
    while (at < size) { /* random piece sizes from 1 to 64 bytes */
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        at += 1 + seed % 64;
        cuts[n++] = at < size ? at : size;
    }
    h1_drive(kind, head_req, eof, data, size, cuts, n, &split);
    if (!same(&whole, &split))
        __builtin_trap();
    if (size <= 1024) {
        for (size_t i = 0; i < size; i++)
            cuts[i] = i + 1;
        h1_drive(kind, head_req, eof, data, size, cuts, size, &split);
        if (!same(&whole, &split))
            __builtin_trap();
    }
    free(cuts);
    return 0;
}
