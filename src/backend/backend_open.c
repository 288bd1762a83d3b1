/* backend_open: a backend from a device name (see backend_open.h). */
#include "backend/backend_open.h"

#include "backend/backend_cuda.h"
#include "backend/devsim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "cuda" → 0, "cuda:N" → N; -1 when s is not a CUDA name, -2 when malformed. */
static int fk_bo_cuda_index(const char *s) {
    if (strncmp(s, "cuda", 4) != 0) return -1;
    if (s[4] == '\0') return 0;
    if (s[4] != ':' || s[5] < '0' || s[5] > '9') return -2;
    errno = 0;
    char *end = NULL;
    long v = strtol(s + 5, &end, 10);
    if (errno || *end != '\0' || v < 0 || v > 1023) return -2;
    return (int)v;
}

bool fk_backend_device_name_ok(const char *device) {
    return device && (!strcmp(device, "cpu") || !strcmp(device, "devsim") || fk_bo_cuda_index(device) >= 0);
}

static fk_backend *fk_bo_cpu(int n_threads, fk_precision prec) {
    fk_backend *be = fk_backend_cpu_create(n_threads);
    if (be && prec == FK_PREC_BF16) fk_backend_cpu_set_precision(be, FK_PREC_BF16);
    return be;
}

fk_status fk_backend_open(fk_context *ctx, const char *device, int n_threads, fk_precision prec,
                          fk_backend **out) {
    *out = NULL;
    if (!device || !strcmp(device, "cpu")) {
        *out = fk_bo_cpu(n_threads, prec);
        return *out ? FK_OK : fk_error(ctx, FK_ERR_NOMEM, "out of memory creating the CPU backend");
    }
    if (!strcmp(device, "devsim")) {
        fk_backend *cpu = fk_bo_cpu(n_threads, prec);
        fk_backend *sim = cpu ? fk_backend_devsim_wrap(cpu) : NULL;
        if (!sim) {
            if (cpu) cpu->destroy(cpu);
            return fk_error(ctx, FK_ERR_NOMEM, "out of memory creating the simulated device");
        }
        *out = sim;
        return FK_OK;
    }
    int idx = fk_bo_cuda_index(device);
    if (idx < 0)
        return fk_error(ctx, FK_ERR_ARG, "--device %s: expected cpu, cuda, cuda:N (N = 0, 1, ...) or "
                        "devsim", device);
    char err[256] = "";
    fk_backend *be = fk_backend_cuda_create(idx, err, sizeof(err));
    if (!be) { /* err names the device ("cuda:N: ..."): say it once */
        const char *why = err;
        if (!strncmp(why, "cuda:", 5) && strstr(why, ": ")) why = strstr(why, ": ") + 2;
        return fk_error(ctx, FK_ERR_UNSUPPORTED, "--device %s: %s", device, why);
    }
    fk_backend_cuda_set_precision(be, prec == FK_PREC_BF16);
    char desc[256];
    fk_log(ctx, FK_LOG_INFO, "device %s", fk_cuda_device_describe(idx, desc, sizeof(desc)));
    *out = be;
    return FK_OK;
}

void fk_backend_close(fk_backend *be) {
    if (!be) return;
    if (fk_backend_is_devsim(be)) {
        fk_backend *inner = fk_backend_devsim_inner(be);
        be->destroy(be);
        inner->destroy(inner);
        return;
    }
    be->destroy(be);
}

const char *fk_backend_kernel_name(const fk_backend *be) {
    if (fk_backend_is_devsim(be)) be = fk_backend_devsim_inner((fk_backend *)be);
    if (be->device != FK_DEVICE_CPU) return be->name;
    const fk_cpu_impl *impl = fk_cpu_impl_of(be);
    if (impl->precision == FK_PREC_BF16 && impl->bf16_kernel != FK_CPU_BF16_NONE)
        return fk_cpu_bf16_kernel_name(impl->bf16_kernel);
    return fk_cpu_isa_name(impl->isa);
}

static const char *fk_bo_cpu_desc(const fk_backend *be, char *buf, size_t n) {
    const fk_cpu_impl *impl = fk_cpu_impl_of(be);
    snprintf(buf, n, "cpu, %s (%s), %d thread%s", impl->precision == FK_PREC_BF16 ? "bf16" : "f32",
             fk_backend_kernel_name(be), be->n_threads, be->n_threads == 1 ? "" : "s");
    return buf;
}

const char *fk_backend_describe(const fk_backend *be, char *buf, size_t n) {
    if (!buf || !n) return buf;
    if (fk_backend_is_devsim(be)) {
        char inner[160];
        fk_bo_cpu_desc(fk_backend_devsim_inner((fk_backend *)be), inner, sizeof(inner));
        snprintf(buf, n, "devsim over %s", inner);
        return buf;
    }
    if (be->device == FK_DEVICE_CPU) return fk_bo_cpu_desc(be, buf, n);
    char dev[200];
    int idx = fk_backend_cuda_device_index(be);
    fk_cuda_device_describe(idx, dev, sizeof(dev));
    snprintf(buf, n, "cuda:%d %s, %s", idx, dev, fk_backend_cuda_is_bf16(be) ? "bf16" : "f32");
    return buf;
}

/* Device bytes held now and at most so far (0 and 0 on the CPU). */
static void fk_bo_memory(const fk_backend *be, uint64_t *now, uint64_t *peak) {
    *now = *peak = 0;
    if (fk_backend_is_devsim(be)) {
        fk_devsim_stats s;
        fk_backend_devsim_stats(be, &s);
        *now = s.device_bytes;
        *peak = s.peak_device_bytes;
    } else if (be->device != FK_DEVICE_CPU) {
        fk_backend_cuda_memory(be, now, peak);
    }
}

uint64_t fk_backend_device_bytes(const fk_backend *be) {
    uint64_t now, peak;
    fk_bo_memory(be, &now, &peak);
    return now;
}

uint64_t fk_backend_device_peak_bytes(const fk_backend *be) {
    uint64_t now, peak;
    fk_bo_memory(be, &now, &peak);
    return peak;
}
