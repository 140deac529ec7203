/*
 * fuzz_rpc.c - libFuzzer target for JSON-RPC request parsing and the parameter validation of
 * every method in the method table.
 *
 * Each input is parsed as a request; whatever parses is validated against every method's
 * parameter list (not only the one it names), and an error answer is built for it. Nothing
 * may crash, leak or trip a sanitizer; a validated amount is always an integer in range.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rpc_request req;
    char msg[256];
    int code = rpc_parse_request((const char *)data, size, &req, msg, sizeof(msg));
    if (code != 0) {
        assert(code == RPC_PARSE_ERROR || code == RPC_INVALID_REQUEST);
        json_t *err = rpc_make_error(req.id, code, msg, rpc_error_data("invalid_request", false));
        assert(err != NULL);
        json_decref(err);
        rpc_request_clear(&req);
        return 0;
    }
    size_t n;
    const struct rpc_method *m = rpc_methods(&n);
    for (size_t i = 0; i < n; i++) {
        char field[80];
        if (rpc_validate_params(req.params, m[i].params, field, sizeof(field), msg,
                                sizeof(msg))) {
            for (const struct rpc_param *p = m[i].params; p->name != NULL; p++) {
                json_t *v = json_object_get(req.params, p->name);
                if (v != NULL && p->type == RPC_P_AMOUNT) {
                    assert(json_is_integer(v));
                    assert(json_integer_value(v) <= RPC_AMOUNT_LIMIT &&
                           json_integer_value(v) >= -RPC_AMOUNT_LIMIT);
                }
            }
        } else {
            assert(msg[0] != '\0');
        }
    }
    rpc_request_clear(&req);
    return 0;
}
