#!/usr/bin/env bash
# tests/neon.sh — the NEON kernels are real code, so they are built and tested on
# every x86-64 run: cross-compile simd/scalar.c + simd/neon.c + simd/dispatch.c +
# tests/test_simd.c for aarch64 and run the test under qemu-user twice, once on a
# CPU with the dot product extension (-cpu max: the "neon-dotprod" table) and once
# on one without it (-cpu cortex-a72, ARMv8.0: the plain "neon" table, which also
# proves that variant executes no ARMv8.2 instruction).  The PASS/FAIL/SKIP lines
# are forwarded with the CPU model in front of each test name.
# Needs gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user (make deps);
# says SKIP with the reason when they are missing.  On an aarch64 host the normal
# test binaries already run these kernels natively.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cc=${AARCH64_CC:-aarch64-linux-gnu-gcc}
qemu=${QEMU_AARCH64:-qemu-aarch64}
sysroot=${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}
out=$root/build-neon

if [ "$(uname -m)" = aarch64 ]; then
    echo "SKIP neon_qemu: host is aarch64, test_simd runs the NEON kernels natively"
    exit 0
fi
if ! command -v "$cc" >/dev/null; then
    echo "SKIP neon_qemu: $cc not found (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)"
    exit 0
fi
if ! command -v "$qemu" >/dev/null; then
    echo "SKIP neon_qemu: $qemu not found (apt-get install qemu-user)"
    exit 0
fi
if [ ! -d "$sysroot/lib" ]; then
    echo "SKIP neon_qemu: no aarch64 C library in $sysroot (apt-get install libc6-dev-arm64-cross)"
    exit 0
fi

# The same flags as the Makefile: neon.c with its ISA flags, the rest without.
mkdir -p "$out"
flags="-std=c11 -O2 -g -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -Isrc -Isimd"
pids=()
for f in simd/scalar.c simd/dispatch.c simd/interleave.c simd/neon.c tests/test_simd.c; do
    extra=""
    [ "$f" = simd/neon.c ] && extra="-march=armv8.2-a+dotprod+fp16"
    $cc $flags $extra -c "$f" -o "$out/$(basename "$f" .c).o" 2>"$out/$(basename "$f" .c).log" &
    pids+=($!)
done
ok=1
for p in "${pids[@]}"; do wait "$p" || ok=0; done
if [ $ok = 1 ]; then
    $cc -o "$out/test_simd" "$out/scalar.o" "$out/dispatch.o" "$out/interleave.o" "$out/neon.o" \
        "$out/test_simd.o" -lm 2>"$out/link.log" || ok=0
fi
if [ $ok = 0 ]; then
    echo "FAIL neon_build: aarch64 cross-compile failed:"
    cat "$out"/*.log | head -n 40 | sed 's/^/    /'
    exit 1
fi

fail=0
run_cpu() { # cpu model, the table name its run must exercise
    local cpu=$1 want=$2 log rc
    log=$("$qemu" -L "$sysroot" -cpu "$cpu" "$out/test_simd" 2>&1 </dev/null)
    rc=$?
    if [ $rc -ne 0 ] && ! grep -q '^\(PASS\|FAIL\|SKIP\) ' <<<"$log"; then
        echo "FAIL neon_qemu[$cpu]: qemu exited with status $rc:"
        tail -n 10 <<<"$log" | sed 's/^/    /'
        fail=1
        return
    fi
    sed -n 's/^\(PASS\|FAIL\|SKIP\) /\1 qemu-'"$cpu"'\//p' <<<"$log"
    if [ $rc -ne 0 ]; then
        grep -q '^FAIL ' <<<"$log" || echo "FAIL neon_qemu[$cpu]: exited with status $rc"
        fail=1
    fi
    if ! grep -q "^PASS gemm_q8_0\[$want\]" <<<"$log"; then
        echo "FAIL neon_qemu[$cpu]: the $want table did not run"
        fail=1
    fi
}

export WIM_TEST_QUICK=1
unset WIM_ISA
run_cpu max neon-dotprod
if "$qemu" -cpu help 2>/dev/null | grep -qw cortex-a72; then
    run_cpu cortex-a72 neon
else
    echo "SKIP neon_qemu_plain: this qemu offers no ARMv8.0 CPU model (-cpu cortex-a72)"
fi
exit $fail
