/*  reports.c - a tiny actor type plugin for the tree loader's tests.

    Built as libreports.so (tests/CMakeLists.txt) and named by tree files
    as `plugin: {library: libreports.so, symbol: reports_type}`, as in the
    example of docs/tree-format.md. It uses only troupe's headers, not the
    library, so dlopen needs nothing else. Besides the good type it
    exports types the loader must refuse: one built for another ABI, one
    without a handle function, one declaring a parameter of an unknown
    type.
*/

#include <troupe/tr_type.h>

#define S_EXPORT __attribute__ ((visibility ("default")))

//  Does nothing with its messages; the tests only load it.
static int
s_reports_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self; (void) msg; (void) state;
    return 0;
}

static const tr_param_spec_t s_reports_params [] = {
    { "interval", TR_PARAM_DURATION, false, "time between reports" },
    { "title", TR_PARAM_STRING, true, "the report's title" },
    { NULL, 0, false, NULL }
};

S_EXPORT const tr_actor_type_t reports_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "reports",
    .summary = "writes a report now and then (a test plugin)",
    .behaviour = { .handle = s_reports_handle },
    .params = s_reports_params,
};

//  Built for an ABI that does not exist yet.
S_EXPORT const tr_actor_type_t reports_type_abi99 = {
    .abi = 99,
    .name = "reports_abi99",
    .behaviour = { .handle = s_reports_handle },
};

//  No handle function.
S_EXPORT const tr_actor_type_t reports_type_no_handle = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "reports_no_handle",
};

static const tr_param_spec_t s_odd_params [] = {
    { "odd", 42, false, "a parameter of no known type" },
    { NULL, 0, false, NULL }
};

//  A parameter of type 42.
S_EXPORT const tr_actor_type_t reports_type_odd_param = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "reports_odd",
    .behaviour = { .handle = s_reports_handle },
    .params = s_odd_params,
};
