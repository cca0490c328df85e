/*
 * avx512vnni.c — the int8 kernels with AVX512-VNNI's vpdpbusd (Ice Lake, Cascade
 * Lake and later Xeons, Zen 4+), and the fallback of the AMX table.
 *
 * Owns: wim_kernels_avx512vnni.  The body is avx2.c's register tiling with the
 * EVEX ymm form of vpdpbusd (AVX512VL) as the 32-byte block product; compiled
 * with the AVX-512 flags, GCC also gets 32 vector registers for the tiles.  The
 * semantics are scalar.c's, bit-exact for the int8 paths, so AMX can hand its
 * remainders here.  Float weights: F16C for fp16; bf16 -> fp32 is an exact
 * 16-bit shift.  AVX512-BF16's vdpbf16ps is deliberately not used: it would round
 * the fp32 activations to bf16 and break the 1e-5 contract with scalar.c.
 *
 * dispatch.c requires avx512f, avx512bw, avx512vl, avx512vnni (+ avx2, fma, f16c)
 * and OS-enabled zmm/opmask state before handing this table out.
 */
#define WIM_X86_TABLE wim_kernels_avx512vnni
#define WIM_X86_ISA "avx512vnni"
#define WIM_X86_DPBUSD 2
#include "avx2.c"
