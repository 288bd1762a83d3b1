/* cpu_features: cpuid/xgetbv detection (x86-64); all false elsewhere.
 *
 * Bits used (Intel SDM vol. 2A, CPUID):
 *   leaf 1 ECX: 20 SSE4.2, 12 FMA, 27 OSXSAVE, 28 AVX, 29 F16C
 *   leaf 7.0 EBX: 5 AVX2, 16 AVX512F, 30 AVX512BW, 31 AVX512VL
 *   leaf 7.0 ECX: 11 AVX512_VNNI
 *   leaf 7.0 EDX: 22 AMX-BF16, 23 AVX512_FP16, 24 AMX-TILE, 25 AMX-INT8
 *   leaf 7.1 EAX: 5 AVX512_BF16
 * XCR0 (xgetbv 0): bits 1|2 SSE/AVX state, 5|6|7 AVX-512 state, 17|18 tile state. */
#include "core/cpu_features.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define FK_X86 1
#endif

#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#define FK_ARCH_REQ_XCOMP_PERM 0x1023
#define FK_XFEATURE_XTILEDATA 18
#endif

#ifdef FK_X86
static uint64_t fk_xgetbv0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}
#endif

fk_cpu_features fk_cpu_features_detect(void) {
    fk_cpu_features f;
    memset(&f, 0, sizeof(f));
#ifdef FK_X86
    unsigned a, b, c, d;
    f.x86 = true;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
    unsigned max_leaf = a;
    memcpy(f.vendor + 0, &b, 4);
    memcpy(f.vendor + 4, &d, 4);
    memcpy(f.vendor + 8, &c, 4);
    f.vendor[12] = '\0';

    unsigned ext_max = __get_cpuid_max(0x80000000u, NULL);
    if (ext_max >= 0x80000004u) {
        unsigned r[12];
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002u + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
        memcpy(f.brand, r, 48);
        f.brand[48] = '\0';
        /* trim leading/trailing spaces */
        char *s = f.brand;
        while (*s == ' ') s++;
        memmove(f.brand, s, strlen(s) + 1);
        for (size_t n = strlen(f.brand); n > 0 && f.brand[n - 1] == ' '; n--) f.brand[n - 1] = '\0';
    }

    if (max_leaf < 1) return f;
    __cpuid(1, a, b, c, d);
    bool osxsave = (c >> 27) & 1;
    uint64_t xcr0 = osxsave ? fk_xgetbv0() : 0;
    bool os_avx = (xcr0 & 0x6) == 0x6;
    bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
    bool os_tile = (xcr0 & (3ull << 17)) == (3ull << 17);

    f.sse42 = (c >> 20) & 1;
    f.avx = os_avx && ((c >> 28) & 1);
    f.fma = f.avx && ((c >> 12) & 1);
    f.f16c = f.avx && ((c >> 29) & 1);

    if (max_leaf >= 7) {
        unsigned a7, b7, c7, d7;
        __cpuid_count(7, 0, a7, b7, c7, d7);
        unsigned max_sub7 = a7;
        f.avx2 = f.avx && ((b7 >> 5) & 1);
        f.avx512f = os_avx512 && ((b7 >> 16) & 1);
        f.avx512bw = f.avx512f && ((b7 >> 30) & 1);
        f.avx512vl = f.avx512f && ((b7 >> 31) & 1);
        f.avx512_vnni = f.avx512f && ((c7 >> 11) & 1);
        f.avx512_fp16 = f.avx512f && ((d7 >> 23) & 1);
        f.amx_tile = os_tile && ((d7 >> 24) & 1);
        f.amx_bf16 = f.amx_tile && ((d7 >> 22) & 1);
        f.amx_int8 = f.amx_tile && ((d7 >> 25) & 1);
        if (max_sub7 >= 1) {
            __cpuid_count(7, 1, a7, b7, c7, d7);
            f.avx512_bf16 = f.avx512f && ((a7 >> 5) & 1);
        }
    }
#endif
    return f;
}

bool fk_cpu_request_amx(void) {
#if defined(__linux__) && defined(__x86_64__)
    fk_cpu_features f = fk_cpu_features_detect();
    if (!f.amx_tile) return false;
    return syscall(SYS_arch_prctl, FK_ARCH_REQ_XCOMP_PERM, FK_XFEATURE_XTILEDATA) == 0;
#else
    return false;
#endif
}

const char *fk_cpu_features_str(const fk_cpu_features *f, char *buf, int n) {
    struct {
        bool on;
        const char *name;
    } list[] = {
        {f->sse42, "sse4.2"},          {f->avx, "avx"},           {f->f16c, "f16c"},
        {f->fma, "fma"},               {f->avx2, "avx2"},         {f->avx512f, "avx512f"},
        {f->avx512bw, "avx512bw"},     {f->avx512vl, "avx512vl"}, {f->avx512_vnni, "avx512_vnni"},
        {f->avx512_bf16, "avx512_bf16"}, {f->avx512_fp16, "avx512_fp16"},
        {f->amx_tile, "amx_tile"},     {f->amx_bf16, "amx_bf16"}, {f->amx_int8, "amx_int8"},
    };
    if (n <= 0) return buf;
    buf[0] = '\0';
    int len = 0;
    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++) {
        if (!list[i].on) continue;
        int w = snprintf(buf + len, (size_t)(n - len), "%s%s", len ? " " : "", list[i].name);
        if (w < 0 || w >= n - len) break;
        len += w;
    }
    if (len == 0) snprintf(buf, (size_t)n, "(none)");
    return buf;
}
