/*
 * avxvnni.c — the AVX2 kernels with the VEX-encoded AVX-VNNI int8 dot product
 * (vpdpbusd on ymm, Alder Lake and later, Zen 5).
 *
 * Owns: wim_kernels_avxvnni.  The body is avx2.c's: one register-tiling scheme,
 * one set of semantics (bit-exact with scalar.c for the int8 paths); only the
 * 32-byte block product changes from maddubs+madd to one vpdpbusd.
 */
#define WIM_X86_TABLE wim_kernels_avxvnni
#define WIM_X86_ISA "avxvnni"
#define WIM_X86_DPBUSD 1
#include "avx2.c"
