/*
 * filters/pbschema.c — see pbschema.h.
 */
#include "filters/pbschema.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int scalar(tg_openapi_t *d, struct evbuffer *out, const tg_pbd_field_t *f, int preserve)
{
    switch (f->type) {
    case TG_PBT_DOUBLE:
    case TG_PBT_FLOAT:
        return evbuffer_add_printf(out, "{\"anyOf\": [{\"type\": \"number\"}, {\"type\": \"string\", \"enum\": "
                                        "[\"NaN\", \"Infinity\", \"-Infinity\"]}]}") < 0
                   ? -1
                   : 0;
    case TG_PBT_INT32:
    case TG_PBT_SINT32:
    case TG_PBT_SFIXED32:
        return evbuffer_add_printf(out, "{\"type\": \"integer\", \"format\": \"int32\"}") < 0 ? -1 : 0;
    case TG_PBT_UINT32:
    case TG_PBT_FIXED32:
        return evbuffer_add_printf(out, "{\"type\": \"integer\", \"minimum\": 0, \"maximum\": 4294967295}") < 0 ? -1
                                                                                                                   : 0;
    case TG_PBT_INT64:
    case TG_PBT_SINT64:
    case TG_PBT_SFIXED64:
        return evbuffer_add_printf(out, "{\"type\": \"string\", \"format\": \"int64\"}") < 0 ? -1 : 0;
    case TG_PBT_UINT64:
    case TG_PBT_FIXED64:
        return evbuffer_add_printf(out, "{\"type\": \"string\", \"format\": \"uint64\"}") < 0 ? -1 : 0;
    case TG_PBT_BOOL:
        return evbuffer_add_printf(out, "{\"type\": \"boolean\"}") < 0 ? -1 : 0;
    case TG_PBT_STRING:
        return evbuffer_add_printf(out, "{\"type\": \"string\"}") < 0 ? -1 : 0;
    case TG_PBT_BYTES:
        return evbuffer_add_printf(out, "{\"type\": \"string\", \"format\": \"byte\"}") < 0 ? -1 : 0;
    case TG_PBT_ENUM:
        if (f->enumt->null_value)
            return evbuffer_add_printf(out, "{\"nullable\": true}") < 0 ? -1 : 0;
        /* by name; a number the enum does not name is written as a number */
        evbuffer_add_printf(out, "{\"anyOf\": [{\"type\": \"string\", \"enum\": [");
        for (size_t i = 0; i < f->enumt->n_values; i++) {
            if (i)
                evbuffer_add(out, ", ", 2);
            tg_openapi_str(out, f->enumt->values[i].name);
        }
        return evbuffer_add_printf(out, "]}, {\"type\": \"integer\", \"format\": \"int32\"}]}") < 0 ? -1 : 0;
    case TG_PBT_MESSAGE:
    case TG_PBT_GROUP:
        return tg_pbs_message(d, out, f->message, preserve);
    }
    return evbuffer_add_printf(out, "{}") < 0 ? -1 : 0;
}

int tg_pbs_field(tg_openapi_t *d, struct evbuffer *out, const tg_pbd_field_t *f, int preserve)
{
    if (f->repeated && f->type == TG_PBT_MESSAGE && f->message->map_entry) {
        const tg_pbd_field_t *v = tg_pbd_field(f->message, 2);
        evbuffer_add_printf(out, "{\"type\": \"object\", \"additionalProperties\": ");
        int rc = v != NULL ? scalar(d, out, v, preserve) : evbuffer_add_printf(out, "{}") < 0 ? -1 : 0;
        evbuffer_add(out, "}", 1);
        return rc;
    }
    if (!f->repeated)
        return scalar(d, out, f, preserve);
    evbuffer_add_printf(out, "{\"type\": \"array\", \"items\": ");
    int rc = scalar(d, out, f, preserve);
    evbuffer_add(out, "}", 1);
    return rc;
}

int tg_pbs_message(tg_openapi_t *d, struct evbuffer *out, const tg_pbd_message_t *m, int preserve)
{
    switch (m->wkt) {
    case TG_WKT_TIMESTAMP:
        return evbuffer_add_printf(out, "{\"type\": \"string\", \"format\": \"date-time\"}") < 0 ? -1 : 0;
    case TG_WKT_DURATION:
        return evbuffer_add_printf(out, "{\"type\": \"string\", \"pattern\": \"^-?[0-9]+(\\\\.[0-9]{1,9})?s$\"}") < 0
                   ? -1
                   : 0;
    case TG_WKT_FIELD_MASK:
        return evbuffer_add_printf(out, "{\"type\": \"string\"}") < 0 ? -1 : 0;
    case TG_WKT_STRUCT:
        return evbuffer_add_printf(out, "{\"type\": \"object\", \"additionalProperties\": {}}") < 0 ? -1 : 0;
    case TG_WKT_VALUE:
        return evbuffer_add_printf(out, "{}") < 0 ? -1 : 0;
    case TG_WKT_LIST_VALUE:
        return evbuffer_add_printf(out, "{\"type\": \"array\", \"items\": {}}") < 0 ? -1 : 0;
    case TG_WKT_WRAPPER: {
        const tg_pbd_field_t *v = tg_pbd_field(m, 1);
        return v != NULL ? scalar(d, out, v, preserve) : evbuffer_add_printf(out, "{}") < 0 ? -1 : 0;
    }
    case TG_WKT_ANY:
        return evbuffer_add_printf(out, "{\"type\": \"object\", \"required\": [\"@type\"], \"properties\": "
                                        "{\"@type\": {\"type\": \"string\"}}, \"additionalProperties\": {}}") < 0
                   ? -1
                   : 0;
    case TG_WKT_EMPTY:
        return evbuffer_add_printf(out, "{\"type\": \"object\"}") < 0 ? -1 : 0;
    case TG_WKT_NONE:
        break;
    }
    char *ref = malloc(strlen(m->full_name) + 24); /* the name comes from descriptors: escaped like any text */
    if (ref == NULL)
        return -1;
    sprintf(ref, "#/components/schemas/%s", m->full_name);
    evbuffer_add_printf(out, "{\"$ref\": ");
    tg_openapi_str(out, ref);
    evbuffer_add(out, "}", 1);
    free(ref);
    int rc = tg_openapi_claim(d, m->full_name);
    if (rc <= 0)
        return rc;
    struct evbuffer *own = evbuffer_new();
    if (own == NULL)
        return -1;
    evbuffer_add_printf(own, "{\"type\": \"object\", \"title\": ");
    tg_openapi_str(own, m->full_name);
    evbuffer_add_printf(own, ", \"properties\": {");
    for (size_t i = 0; i < m->n_fields && rc >= 0; i++) {
        const tg_pbd_field_t *f = &m->fields[i];
        if (i)
            evbuffer_add(own, ", ", 2);
        tg_openapi_str(own, preserve ? f->name : f->json_name);
        evbuffer_add(own, ": ", 2);
        rc = tg_pbs_field(d, own, f, preserve);
    }
    evbuffer_add(own, "}}", 2);
    size_t len = evbuffer_get_length(own);
    const char *text = (const char *)evbuffer_pullup(own, -1);
    if (rc >= 0 && (text == NULL || tg_openapi_schema(d, m->full_name, text, len) < 0))
        rc = -1;
    evbuffer_free(own);
    return rc < 0 ? -1 : 0;
}
