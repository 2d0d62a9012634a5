// core/tensor/simd_intrinsics.h — <immintrin.h>, with GCC 12's false -Wmaybe-uninitialized
// silenced for that header alone.
//
// GCC 12's AVX-512 intrinsics pass a deliberately undefined vector (_mm512_undefined_ps:
// `__m512 __Y = __Y;`) as the unused merge operand of their unpack, max, exp... operations, and
// -Wmaybe-uninitialized reports it wherever they are inlined: in Eigen's packet math and in
// attnlab's GEMM kernel. It is the header's own idiom, not anything of ours. A translation unit
// that inlines those operations includes this header first, before anything (Eigen, TBB) that
// includes <immintrin.h> itself; the include guard then makes the later inclusions no-ops, and
// every other warning stays on.
#pragma once

#pragma GCC diagnostic push
#if !defined(__clang__)  // a GCC warning; clang has no such group
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#pragma GCC diagnostic pop
