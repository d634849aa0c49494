/*
 * The room of a request taken from its JSON body ($room_affinity_body_room)
 * or from a query argument ($room_affinity_arg_room).
 *
 * With "room_affinity_body on" a precontent phase handler reads the body
 * (as the mirror module does) and parses it with jansson, so the room is
 * known before the content handler (proxy_pass) runs the balancer.  The
 * body itself is left as nginx read it and is sent to the backend as it is.
 */

#include "ra_body.h"
#include <jansson.h>


typedef struct {
    ngx_chain_t   *cl;
    off_t          done;          /* bytes of cl->buf already given */
    off_t          total;
    ngx_log_t     *log;
    ngx_uint_t     values;        /* "{", "[", "," seen outside strings */
    unsigned       error:1;
    unsigned       too_many:1;
    unsigned       in_string:1;
    unsigned       escaped:1;
} ra_body_reader_t;


static ngx_int_t ra_body_room_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ra_arg_room_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ra_body_handler(ngx_http_request_t *r);
static void ra_body_read_handler(ngx_http_request_t *r);
static size_t ra_body_read(void *buffer, size_t size, void *data);
static size_t ra_body_count(ra_body_reader_t *rd, u_char *p, size_t n);


static ngx_http_variable_t  ra_body_vars[] = {

    { ngx_string("room_affinity_body_room"), NULL, ra_body_room_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("room_affinity_arg_room"), NULL, ra_arg_room_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ra_body_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ra_body_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


ngx_int_t
ra_body_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    /*
     * The precontent phase, as the mirror module: after the access checks
     * (allow/deny, auth_basic, auth_request) and limit_req, so a request
     * that is refused anyway is not buffered, and before the content
     * handler, whose upstream balancer evaluates the key.
     */

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ra_body_handler;

    return NGX_OK;
}


static ngx_int_t
ra_body_room_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ra_body_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_room_affinity_module);

    if (ctx == NULL || ctx->room.len == 0) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "room_affinity: no room in the body%s",
                       ctx ? "" : " (room_affinity_body is off here)");
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = ctx->room.len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = ctx->room.data;

    return NGX_OK;
}


static ngx_int_t
ra_arg_room_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t       room;
    ngx_int_t       rc;
    ra_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_room_affinity_module);

    rc = ra_arg_room(r, &rlcf->field, &room);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc != NGX_OK || room.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = room.len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = room.data;

    return NGX_OK;
}


/*
 * The query argument "field", decoded as a form would encode it: "+" is a
 * space, then %XX sequences.  NGX_DECLINED: no such argument; NGX_ABORT:
 * a "%" without two hex digits.
 */

ngx_int_t
ra_arg_room(ngx_http_request_t *r, ngx_str_t *field, ngx_str_t *room)
{
    u_char     *p, *src, *dst;
    size_t      i;
    ngx_str_t   arg;

    ngx_str_null(room);

    if (ngx_http_arg(r, field->data, field->len, &arg) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (arg.len == 0) {
        return NGX_OK;
    }

    /* "%" and two hex digits, or ngx_unescape_uri() drops it silently */

    for (i = 0; i < arg.len; i++) {
        if (arg.data[i] == '%'
            && (i + 2 >= arg.len
                || !isxdigit(arg.data[i + 1]) || !isxdigit(arg.data[i + 2])))
        {
            return NGX_ABORT;
        }
    }

    p = ngx_pnalloc(r->pool, arg.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < arg.len; i++) {
        p[i] = (arg.data[i] == '+') ? ' ' : arg.data[i];
    }

    src = p;
    dst = p;

    ngx_unescape_uri(&dst, &src, arg.len, 0);

    room->data = p;
    room->len = dst - p;

    return NGX_OK;
}


static ngx_int_t
ra_body_handler(ngx_http_request_t *r)
{
    ngx_int_t        rc;
    ra_body_ctx_t   *ctx;
    ra_loc_conf_t   *rlcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_room_affinity_module);

    if (rlcf->body == RA_BODY_OFF || rlcf->join) {
        /* the join API reads and parses its own body */
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_room_affinity_module);

    if (ctx) {
        if (ctx->status != NGX_HTTP_BAD_REQUEST) {
            return ctx->status;
        }

        /* room_affinity_body strict, and the body names no room */

        ctx->status = NGX_DONE;

        ngx_http_finalize_request(r, ra_json_error(r, NGX_HTTP_BAD_REQUEST,
                                                   &ctx->err));
        return NGX_DONE;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ra_body_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_room_affinity_module);

    if (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked) {
        /* no body: nothing to read, even when strict */
        ctx->status = NGX_DECLINED;
        return NGX_DECLINED;
    }

    ctx->status = NGX_DONE;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "room_affinity: reading the body");

    rc = ngx_http_read_client_request_body(r, ra_body_read_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        /* e.g. 413 above client_max_body_size */
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);
    return NGX_DONE;
}


static void
ra_body_read_handler(ngx_http_request_t *r)
{
    ngx_int_t        rc;
    ra_body_ctx_t   *ctx;
    ra_loc_conf_t   *rlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_room_affinity_module);
    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_room_affinity_module);

    if (r->headers_in.content_length_n == 0) {
        /* an empty chunked body: no body, as without one, even strict */
        rc = NGX_OK;

    } else if (r->headers_in.content_length_n > (off_t) rlcf->body_max) {
        /*
         * the body still goes to the backend byte for byte, but a large
         * document is not parsed in the event loop for its room
         */
        ra_room_error(&ctx->err, "body_too_large",
                      "the body is over room_affinity_body_max_size (%uz)",
                      rlcf->body_max);
        rc = NGX_DECLINED;

    } else {
        rc = ra_body_room(r, &rlcf->field, &ctx->room, &ctx->err);
    }

    if (rc == NGX_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "room_affinity: body room \"%V\"", &ctx->room);
        ctx->status = NGX_DECLINED;

    } else if (rc == NGX_ERROR) {
        ctx->status = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "room_affinity: the body names no room: %*s",
                       ctx->err.len, ctx->err.reason);

        ctx->status = (rlcf->body == RA_BODY_STRICT) ? NGX_HTTP_BAD_REQUEST
                                                      : NGX_DECLINED;
    }

    /* an internal redirect (error_page, try_files) keeps the body */
    r->preserve_body = 1;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * Parses the request body that nginx has read (memory buffers and/or a
 * temporary file) and takes the string member "field" of its top-level
 * object.  NGX_DECLINED with err set when there is no room in it.
 */

ngx_int_t
ra_body_room(ngx_http_request_t *r, ngx_str_t *field, ngx_str_t *room,
    ra_room_err_t *err)
{
    u_char            *p;
    json_t            *root, *value;
    size_t             len, i;
    ngx_int_t          rc;
    json_error_t       jerr;
    ra_body_reader_t   rd;
    char               text[JSON_ERROR_TEXT_LENGTH];

    ngx_str_null(room);

    ngx_memzero(&rd, sizeof(ra_body_reader_t));
    rd.cl = r->request_body ? r->request_body->bufs : NULL;
    rd.log = r->connection->log;

    /*
     * As JavaScript's JSON.parse: integers of any size (as reals), and the
     * last of duplicate members.  field->data is NUL-terminated: it is a
     * configuration string or a literal.
     */

    root = json_load_callback(ra_body_read, &rd, JSON_DECODE_INT_AS_REAL,
                              &jerr);

    if (rd.error) {
        if (root) {
            json_decref(root);
        }

        return NGX_ERROR;
    }

    if (rd.too_many) {
        if (root) {
            json_decref(root);
        }

        ra_room_error(err, "too_many_values",
                      "the body holds more than %d JSON values",
                      RA_BODY_MAX_VALUES);
        return NGX_DECLINED;
    }

    if (root == NULL) {
        if (rd.total == 0) {
            ra_room_error(err, "invalid_json", "the body is empty");
            return NGX_DECLINED;
        }

        /* the text may quote bytes of the body: keep it printable ASCII */

        for (i = 0; i < JSON_ERROR_TEXT_LENGTH - 1 && jerr.text[i]; i++) {
            text[i] = (jerr.text[i] < 0x20 || jerr.text[i] > 0x7e)
                      ? '?' : jerr.text[i];
        }

        text[i] = '\0';

        ra_room_error(err, "invalid_json",
                      "the body is not valid JSON: %s (line %d, column %d)",
                      text, jerr.line, jerr.column);
        return NGX_DECLINED;
    }

    rc = NGX_DECLINED;

    if (!json_is_object(root)) {
        ra_room_error(err, "not_an_object",
                      "the body is a JSON array, not an object");
        goto done;
    }

    value = json_object_get(root, (const char *) field->data);

    if (value == NULL) {
        ra_room_error(err, "missing_room", "\"%V\" is missing", field);
        goto done;
    }

    if (!json_is_string(value)) {
        ra_room_error(err, "invalid_room", "\"%V\" is not a string", field);
        goto done;
    }

    len = json_string_length(value);

    if (len == 0) {
        ra_room_error(err, "empty_room", "\"%V\" is empty", field);
        goto done;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    ngx_memcpy(p, json_string_value(value), len);

    room->data = p;
    room->len = len;

    rc = NGX_OK;

done:

    json_decref(root);

    return rc;
}


/* jansson's reader: the body's buffers in order, reading file parts */

static size_t
ra_body_read(void *buffer, size_t size, void *data)
{
    ra_body_reader_t  *rd = data;

    off_t       avail;
    ssize_t     n;
    ngx_buf_t  *b;

    while (rd->cl) {
        b = rd->cl->buf;

        if (ngx_buf_in_memory(b)) {
            avail = (b->last - b->pos) - rd->done;

            if (avail > 0) {
                n = (avail < (off_t) size) ? (ssize_t) avail : (ssize_t) size;
                ngx_memcpy(buffer, b->pos + rd->done, n);
                rd->done += n;
                rd->total += n;
                return ra_body_count(rd, buffer, n);
            }

        } else if (b->in_file) {
            avail = (b->file_last - b->file_pos) - rd->done;

            if (avail > 0) {
                n = (avail < (off_t) size) ? (ssize_t) avail : (ssize_t) size;

                n = ngx_read_file(b->file, buffer, n, b->file_pos + rd->done);

                if (n == NGX_ERROR || n == 0) {
                    ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                                  "room_affinity: cannot read the body "
                                  "from \"%V\"", &b->file->name);
                    rd->error = 1;
                    return (size_t) -1;
                }

                rd->done += n;
                rd->total += n;
                return ra_body_count(rd, buffer, n);
            }
        }

        rd->cl = rd->cl->next;
        rd->done = 0;
    }

    return 0;
}



/*
 * Counts the values in what the parser is handed, before it parses it:
 * past RA_BODY_MAX_VALUES the read fails, and jansson stops there, so a
 * body costs a bounded parse whatever its size (a byte loop over the
 * rest is not even done).
 */

static size_t
ra_body_count(ra_body_reader_t *rd, u_char *p, size_t n)
{
    u_char  *last;

    for (last = p + n; p < last; p++) {

        if (rd->in_string) {
            if (rd->escaped) {
                rd->escaped = 0;

            } else if (*p == '\\') {
                rd->escaped = 1;

            } else if (*p == '"') {
                rd->in_string = 0;
            }

            continue;
        }

        switch (*p) {

        case '"':
            rd->in_string = 1;
            break;

        case '{':
        case '[':
        case ',':
            if (++rd->values > RA_BODY_MAX_VALUES) {
                rd->too_many = 1;
                return (size_t) -1;
            }

            break;

        default:
            break;
        }
    }

    return n;
}
