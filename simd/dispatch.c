/*
 * dispatch.c — picks the kernel table once, at start-up, from what the CPU and
 * the operating system allow.
 *
 * Owns: CPU feature detection (cpuid + xgetbv on x86-64, getauxval on aarch64),
 * the Linux AMX permission request, the WIM_ISA override, and the one global
 * mutable pointer of the engine (the active table).
 *
 * Invariants:
 *  - This file is compiled without ISA flags; nothing ISA-specific runs before
 *    the checks below say the CPU and the OS support it.  The ISA files have no
 *    constructors, so merely linking them is harmless on any CPU.
 *  - An ISA counts as available only when the CPU reports the instructions AND
 *    the OS saves the register state (XCR0) AND, for AMX, the kernel granted
 *    this process the tile data permission.
 *  - The default choice is the best available: amx > avx512vnni > avxvnni > avx2
 *    > scalar on x86-64, neon (dotprod when present) on aarch64.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simd.h"

#if defined(__x86_64__) || defined(_M_X64)
#define WIM_X86 1
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#elif defined(__aarch64__)
#define WIM_ARM64 1
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

extern const wim_kernels wim_kernels_scalar;
#if WIM_X86
extern const wim_kernels wim_kernels_avx2, wim_kernels_avxvnni, wim_kernels_avx512vnni,
    wim_kernels_amx;
#elif WIM_ARM64
extern const wim_kernels wim_kernels_neon, wim_kernels_neon_dotprod;
#endif

/* What the CPU reports (cpuid) and what the OS enabled (XCR0); filled once. */
static struct {
    int done;
    int avx, avx2, fma, f16c, avxvnni;                       /* CPU bits */
    int avx512f, avx512bw, avx512vl, avx512vnni, avx512bf16; /* CPU bits */
    int amx_tile, amx_int8;                                  /* CPU bits */
    int os_ymm, os_zmm, os_tile; /* register state the OS saves (XCR0) */
    int amx_perm;                /* 0 not asked yet, 1 granted, -1 refused */
    int neon, dotprod;
    char vendor[13];
} cpu;

static const wim_kernels *active = &wim_kernels_scalar;

#if WIM_X86
static unsigned long long xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

static void detect(void) {
    if (cpu.done) return;
    cpu.done = 1;
#if WIM_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    unsigned maxleaf = a;
    memcpy(cpu.vendor, &b, 4);
    memcpy(cpu.vendor + 4, &d, 4);
    memcpy(cpu.vendor + 8, &c, 4);
    __cpuid_count(1, 0, a, b, c, d);
    cpu.fma = (c >> 12) & 1;
    cpu.avx = (c >> 28) & 1;
    cpu.f16c = (c >> 29) & 1;
    /* xgetbv exists only when the OS set CR4.OSXSAVE (cpuid.1:ecx bit 27). */
    unsigned long long xcr0 = (c >> 27) & 1 ? xgetbv0() : 0;
    cpu.os_ymm = (xcr0 & 0x6) == 0x6;                 /* SSE + AVX state */
    cpu.os_zmm = cpu.os_ymm && (xcr0 & 0xe0) == 0xe0; /* opmask, ZMM_Hi256, Hi16_ZMM */
    cpu.os_tile = (xcr0 & 0x60000) == 0x60000;        /* XTILECFG, XTILEDATA */
    if (maxleaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        unsigned max7 = a;
        cpu.avx2 = (b >> 5) & 1;
        cpu.avx512f = (b >> 16) & 1;
        cpu.avx512bw = (b >> 30) & 1;
        cpu.avx512vl = (b >> 31) & 1;
        cpu.avx512vnni = (c >> 11) & 1;
        cpu.amx_tile = (d >> 24) & 1;
        cpu.amx_int8 = (d >> 25) & 1;
        if (max7 >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            cpu.avxvnni = (a >> 4) & 1;
            cpu.avx512bf16 = (a >> 5) & 1;
        }
    }
#elif WIM_ARM64
    unsigned long hw = getauxval(AT_HWCAP);
    cpu.neon = (hw & HWCAP_ASIMD) != 0;
    cpu.dotprod = cpu.neon && (hw & HWCAP_ASIMDDP) != 0;
    strcpy(cpu.vendor, "aarch64");
#endif
}

#if WIM_X86
/* Linux keeps AMX tile data disabled until a process asks (arch_prctl, 5.16+). */
static int amx_permission(void) {
    if (cpu.amx_perm == 0) {
#ifdef SYS_arch_prctl
        const long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
        cpu.amx_perm =
            syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 ? 1 : -1;
#else
        cpu.amx_perm = -1;
#endif
    }
    return cpu.amx_perm == 1;
}
#endif

/* The x86 tables, best first (the default is the first one available). */
#if WIM_X86
static const char *const x86_order[] = {"amx", "avx512vnni", "avxvnni", "avx2"};
#endif

static const char *const known[] = {"scalar", "avx2", "avxvnni", "avx512vnni", "amx", "neon"};

/* Whether `isa` can run here; if not, why (one phrase, e.g. "CPU lacks avx512vnni"). */
static const wim_kernels *lookup(const char *isa, char *why, size_t cap) {
    detect();
    if (why && cap) why[0] = 0;
    int is_known = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        is_known |= !strcmp(isa, known[i]);
    if (!is_known) {
        if (why)
            snprintf(why, cap, "unknown ISA '%s' (known: scalar avx2 avxvnni avx512vnni amx neon)",
                     isa);
        return NULL;
    }
    if (!strcmp(isa, "scalar")) return &wim_kernels_scalar;
#if WIM_X86
    if (!strcmp(isa, "neon")) {
        if (why) snprintf(why, cap, "neon is not built for x86-64");
        return NULL;
    }
    /* The CPU bits each table needs, then the OS state, then (AMX) the permission. */
    const int want_vnni = !strcmp(isa, "avxvnni");
    const int want_512 = !strcmp(isa, "avx512vnni") || !strcmp(isa, "amx");
    const int want_amx = !strcmp(isa, "amx");
    const struct {
        const char *name;
        int need, have;
    } bits[] = {
        {"avx", 1, cpu.avx},
        {"avx2", 1, cpu.avx2},
        {"fma", 1, cpu.fma},
        {"f16c", 1, cpu.f16c},
        {"avxvnni", want_vnni, cpu.avxvnni},
        {"avx512f", want_512, cpu.avx512f},
        {"avx512bw", want_512, cpu.avx512bw},
        {"avx512vl", want_512, cpu.avx512vl},
        {"avx512vnni", want_512, cpu.avx512vnni},
        {"amx-tile", want_amx, cpu.amx_tile},
        {"amx-int8", want_amx, cpu.amx_int8},
    };
    char missing[128] = "";
    for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++)
        if (bits[i].need && !bits[i].have)
            snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s",
                     missing[0] ? " " : "", bits[i].name);
    if (missing[0]) {
        if (why) snprintf(why, cap, "CPU lacks %s", missing);
        return NULL;
    }
    const char *os = !cpu.os_ymm                ? "AVX (ymm)"
                     : want_512 && !cpu.os_zmm  ? "AVX-512 (zmm, opmask)"
                     : want_amx && !cpu.os_tile ? "AMX tile"
                                                : NULL;
    if (os) {
        if (why) snprintf(why, cap, "the OS does not enable %s register state (XCR0)", os);
        return NULL;
    }
    if (want_amx && !amx_permission()) {
        if (why)
            snprintf(why, cap, "the kernel refused AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM)");
        return NULL;
    }
    if (!strcmp(isa, "avx2")) return &wim_kernels_avx2;
    if (want_vnni) return &wim_kernels_avxvnni;
    return want_amx ? &wim_kernels_amx : &wim_kernels_avx512vnni;
#elif WIM_ARM64
    if (!strcmp(isa, "neon")) {
        if (!cpu.neon) {
            if (why) snprintf(why, cap, "CPU lacks asimd");
            return NULL;
        }
        return cpu.dotprod ? &wim_kernels_neon_dotprod : &wim_kernels_neon;
    }
    if (why) snprintf(why, cap, "%s is not built for aarch64", isa);
    return NULL;
#else
    if (why) snprintf(why, cap, "%s is not built for this architecture", isa);
    return NULL;
#endif
}

int wim_kernels_available(const char *isa, char *why, size_t cap) {
    return isa && lookup(isa, why, cap) != NULL;
}

const wim_kernels *wim_kernels_for(const char *isa) {
    return isa ? lookup(isa, NULL, 0) : NULL;
}

int wim_kernels_init(char *err, size_t errlen) {
    detect();
    const char *force = getenv("WIM_ISA");
    if (force && *force) {
        char why[160];
        const wim_kernels *t = lookup(force, why, sizeof why);
        if (!t) {
            if (err && errlen) snprintf(err, errlen, "WIM_ISA=%s: %s", force, why);
            return -1;
        }
        active = t;
        return 0;
    }
    active = &wim_kernels_scalar;
#if WIM_X86
    for (size_t i = 0; i < sizeof x86_order / sizeof x86_order[0]; i++) {
        const wim_kernels *t = lookup(x86_order[i], NULL, 0);
        if (t) {
            active = t;
            break;
        }
    }
#elif WIM_ARM64
    const wim_kernels *t = lookup("neon", NULL, 0);
    if (t) active = t;
#endif
    return 0;
}

const wim_kernels *wim_kernels_get(void) {
    return active;
}

void wim_cpu_describe(char *buf, size_t cap) {
    detect();
    if (!buf || !cap) return;
    size_t n = 0;
    buf[0] = 0;
#define ADD(...)                                                                                   \
    do {                                                                                           \
        if (n < cap) {                                                                             \
            int r_ = snprintf(buf + n, cap - n, __VA_ARGS__);                                      \
            if (r_ > 0) n += (size_t)r_;                                                           \
        }                                                                                          \
    } while (0)
#if WIM_X86
    ADD("x86-64 %s:", cpu.vendor);
    const struct {
        const char *name;
        int on;
    } f[] = {{"avx", cpu.avx},
             {"avx2", cpu.avx2},
             {"fma", cpu.fma},
             {"f16c", cpu.f16c},
             {"avxvnni", cpu.avxvnni},
             {"avx512f", cpu.avx512f},
             {"avx512bw", cpu.avx512bw},
             {"avx512vl", cpu.avx512vl},
             {"avx512vnni", cpu.avx512vnni},
             {"avx512bf16", cpu.avx512bf16},
             {"amx-tile", cpu.amx_tile},
             {"amx-int8", cpu.amx_int8}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].on) ADD(" %s", f[i].name);
    ADD("; OS state:%s%s%s", cpu.os_ymm ? " ymm" : "", cpu.os_zmm ? " zmm" : "",
        cpu.os_tile ? " tiles" : "");
    if (cpu.amx_perm) ADD("; AMX permission %s", cpu.amx_perm > 0 ? "granted" : "refused");
#elif WIM_ARM64
    ADD("aarch64:%s%s", cpu.neon ? " asimd" : "", cpu.dotprod ? " asimddp" : "");
#else
    ADD("generic CPU");
#endif
    ADD("; kernels: %s", active->isa);
#undef ADD
}
