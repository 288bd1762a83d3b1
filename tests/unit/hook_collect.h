/* hook_collect: copies of the tensors a runner hands its debug hook
 * (fk_flux_runner dbg hooks and the like), by name, for the tests that compare
 * intermediates (test_flux.c, test_flux_devsim.c). Hooks get host tensors. */
#ifndef FK_TEST_HOOK_COLLECT_H
#define FK_TEST_HOOK_COLLECT_H

#include "core/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GOT_MAX 96

typedef struct got_item {
    char name[64];
    float *data; /* numel floats */
    int64_t n;
} got_item;

typedef struct got_set {
    got_item it[GOT_MAX];
    int n;
} got_set;

/* The hook: appends a copy of t (f32, host) under `name`; past GOT_MAX, drops. */
static inline void got_collect(void *user, const char *name, const fk_tensor *t) {
    got_set *g = user;
    if (g->n == GOT_MAX) return;
    got_item *it = &g->it[g->n++];
    snprintf(it->name, sizeof(it->name), "%s", name);
    it->n = fk_tensor_numel(t);
    it->data = malloc(sizeof(float) * (size_t)it->n);
    if (it->data) memcpy(it->data, t->data, sizeof(float) * (size_t)it->n);
}

static inline void got_free(got_set *g) {
    for (int i = 0; i < g->n; i++) free(g->it[i].data);
    g->n = 0;
}

static inline const got_item *got_find(const got_set *g, const char *name) {
    for (int i = 0; i < g->n; i++)
        if (!strcmp(g->it[i].name, name)) return &g->it[i];
    return NULL;
}

#endif
