/* backend: op names and helpers shared by every backend. */
#include "backend/backend.h"

const char *fk_op_name(fk_op op) {
    static const char *const names[FK_OP_COUNT] = {
        [FK_OP_LINEAR] = "linear",
        [FK_OP_LAYERNORM] = "layernorm",
        [FK_OP_RMSNORM] = "rmsnorm",
        [FK_OP_SILU] = "silu",
        [FK_OP_GELU_TANH] = "gelu_tanh",
        [FK_OP_GELU_QUICK] = "gelu_quick",
        [FK_OP_SOFTMAX] = "softmax",
        [FK_OP_ATTENTION] = "attention",
        [FK_OP_ROPE] = "rope",
        [FK_OP_ADD] = "add",
        [FK_OP_MUL] = "mul",
        [FK_OP_MODULATE] = "modulate",
        [FK_OP_GATED_ADD] = "gated_add",
        [FK_OP_CONCAT_ROWS] = "concat_rows",
        [FK_OP_SPLIT_ROWS] = "split_rows",
        [FK_OP_COPY_COLS] = "copy_cols",
        [FK_OP_CONV2D] = "conv2d",
        [FK_OP_GROUP_NORM] = "group_norm",
        [FK_OP_UPSAMPLE_NEAREST2X] = "upsample_nearest2x",
        [FK_OP_LINEAR_ACT] = "linear_act",
        [FK_OP_LAYERNORM_MODULATE] = "layernorm_modulate",
        [FK_OP_RMSNORM_ROPE] = "rmsnorm_rope",
        [FK_OP_LINEAR_CAT] = "linear_cat",
        [FK_OP_TRANSPOSE] = "transpose",
        [FK_OP_SCALE_COLS] = "scale_cols",
        [FK_OP_LINEAR_RMSNORM_ROPE] = "linear_rmsnorm_rope",
    };
    if ((unsigned)op >= FK_OP_COUNT || !names[op]) return "unknown";
    return names[op];
}

void fk_backend_linear_multi(fk_backend *be, int n, fk_tensor *const *y, const fk_tensor *x,
                             const fk_tensor *const *w, const fk_tensor *const *b,
                             const fk_act *act) {
    if (be->linear_multi) {
        be->linear_multi(be, n, y, x, w, b, act);
        return;
    }
    for (int i = 0; i < n; i++) {
        if (act[i] == FK_ACT_NONE) be->linear(be, y[i], x, w[i], b[i]);
        else be->linear_act(be, y[i], x, w[i], b[i], act[i]);
    }
}
