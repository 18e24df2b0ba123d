/*
 * filters/grpclimit.h — the `grpc_message_limit` filter: a size limit on
 * each gRPC request message (the 5-byte length prefix of the gRPC framing
 * is read as the body streams), so that a long-lived client stream of
 * small messages is never cut while one oversized message is refused with
 * RESOURCE_EXHAUSTED.
 */
#ifndef TG_FILTERS_GRPCLIMIT_H
#define TG_FILTERS_GRPCLIMIT_H

#include "filters/filter.h"

extern const tg_filter_type_t tg_filter_grpc_message_limit;

#endif
