/* cpu_features: what the CPU (and the OS) can run, detected at run time with
 * cpuid/xgetbv, so kernels pick SIMD paths without -march=native.
 * A feature is reported true only when the CPU has it AND the OS saves its
 * register state (XCR0), i.e. it can actually be used. AMX additionally needs
 * a per-process permission on Linux: fk_cpu_request_amx(). */
#ifndef FK_CPU_FEATURES_H
#define FK_CPU_FEATURES_H

#include <stdbool.h>

typedef struct fk_cpu_features {
    bool x86;          /* the rest is meaningful only on x86-64 */
    char vendor[13];   /* "GenuineIntel", "AuthenticAMD", "" */
    char brand[49];    /* "Intel(R) Xeon(R) ...", "" if unknown */
    bool sse42;
    bool avx;
    bool f16c;
    bool fma;
    bool avx2;
    bool avx512f;
    bool avx512bw;
    bool avx512vl;
    bool avx512_vnni;
    bool avx512_bf16;
    bool avx512_fp16;
    bool amx_tile;     /* CPU and OS (XCR0 tile state) */
    bool amx_bf16;
    bool amx_int8;
} fk_cpu_features;

/* Detect (cheap: a few cpuid instructions; call once and keep the result). */
fk_cpu_features fk_cpu_features_detect(void);

/* Linux: ask the kernel for permission to use AMX tile data in this process
 * (arch_prctl ARCH_REQ_XCOMP_PERM). True when AMX may be used. */
bool fk_cpu_request_amx(void);

/* "avx2 fma f16c avx512f ..." into buf (the usable features); returns buf. */
const char *fk_cpu_features_str(const fk_cpu_features *f, char *buf, int n);

#endif /* FK_CPU_FEATURES_H */
