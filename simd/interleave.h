/*
 * interleave.h — weight rows interleaved 8 at a time, the layout the x86 decode
 * GEMVs read without horizontal sums.
 *
 * Owns: the interleaved forms of Q8_0, of the 32-weight block types Q4_0, Q4_1,
 * Q5_0, Q5_1 and of the K-quants Q4_K, Q5_K, Q6_K (quants.h), and the functions that
 * make and read them (interleave.c).
 *
 * Invariants:
 *  - Rows 8g..8g+7 of a matrix become group g: its blocks (super-blocks for the
 *    K-quants) in order, block b holding the 8 rows' block b in exactly 8 times the
 *    bytes of one block, so a matrix is interleaved in place and the rows after the
 *    last whole group (n % 8) stay row-major behind the groups.
 *  - Within a group's block the fields come in the row format's order, each as 8
 *    rows side by side: fp16 scales 2 bytes of each row at a time (d; m or dmin);
 *    the K-quants' packed scale bytes 1 byte at a time (byte k of row c at 8k + c);
 *    quants (and Q5_K's and Q6_K's high bits) 4 bytes of each row at a time, row c
 *    at byte 4c of each 32: Q8_0's vector v holds values 4v..4v+3, the 4-bit types'
 *    vector u bytes 4u..4u+3 of qs (low nibbles values 4u.., high nibbles 16 + 4u..).
 *    Q5_0/Q5_1's fifth bits become 8 32-bit masks, mask v holding at bit 4c + k row
 *    c's bit for value 4v + k; Q6_K's fields go half by half (ql then qh of values
 *    0..127, then of 128..255), the order its decode reads them.  Every byte of every
 *    row is kept: wim_x8_block gives each block back as the file stored it.
 *  - So lane c of a 4-byte dot product (vpdpbusd) of a quant vector against one
 *    activation block's bytes broadcast is row c's partial sum: a block's (or a
 *    K-quant slice's) 8 int32 lanes are the 8 rows' exact sums, and gemm_x8 keeps
 *    gemm_q8_0's and gemm_q's bits (simd.h).
 */
#ifndef WIM_INTERLEAVE_H
#define WIM_INTERLEAVE_H

#include <stddef.h>
#include <stdint.h>

#include "simd.h"

#define WIM_Q8_0 8 /* ggml's type number, beside quants.h's WIM_Q4_0 .. */

/* Block b of 8 Q8_0 rows: d[c] is row c's scale, qs[v][4c + i] its value 4v + i. */
typedef struct {
    uint16_t d[8];
    int8_t qs[8][32];
} block_q8_0x8;

_Static_assert(sizeof(block_q8_0x8) == 8 * sizeof(block_q8_0), "interleaving works in place");

/* Whether `type` (ggml number) has an interleaved form: Q8_0, Q4_0 .. Q5_1, Q4_K .. Q6_K. */
int wim_x8_type(int type);

/* Interleaves rows 0 .. n - n%8 - 1 of a matrix of n rows of K weights of `type`, in
 * place; the last n % 8 rows stay as they are.  Returns -1 (nothing changed) when
 * there is no memory for one group's copy. */
int wim_interleave(int type, void *w, int n, int K);

/* Block b of row c (0..7) of the group that starts at `group`, as the row stored it
 * (wim_q_block_bytes(type) bytes, or a block_q8_0, at out). */
void wim_x8_block(int type, const void *group, int b, int c, void *out);

/* gemm_x8 as scalar.c computes gemm_q8_0 and gemm_q, each block taken back to its row:
 * scalar.c's and neon.c's entry (neither interleaves a model).  Built without ISA
 * flags, so it runs on any core of the architecture. */
void wim_x8_gemm_ref(int type, int M, int N, int K, const void *x, const void *w, float *y,
                     int ldy);

#endif
