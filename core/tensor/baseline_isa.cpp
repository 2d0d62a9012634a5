// core/tensor/baseline_isa.cpp — refuses, with a message, a CPU that lacks the instruction set this
// build was compiled for (CMake's ATTNLAB_ARCH, x86-64-v3 by default, or -march=native), instead of
// dying later of SIGILL somewhere in the first vectorised loop.
//
// It runs as a constructor of libattnlab_core, which every attnlab library and tool links, so
// before the static initialisers of anything built on it; the check itself is compiled for
// plain x86-64 so that it can run on any such CPU.
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace attnlab {
namespace {

// Plain C only below: an inline C++ helper (std::string, a lambda) would be compiled for the
// build's baseline and could itself use the instructions being checked for.
__attribute__((target("arch=x86-64"))) void add_if_missing(bool present, const char* name, char* list, size_t size) {
  if (present) return;
  if (list[0] != '\0') std::strncat(list, ", ", size - std::strlen(list) - 1);
  std::strncat(list, name, size - std::strlen(list) - 1);
}

__attribute__((constructor(101), target("arch=x86-64"))) void refuse_a_cpu_without_the_baseline() {
  __builtin_cpu_init();
  char missing[64] = "";
#if defined(__AVX2__)
  add_if_missing(__builtin_cpu_supports("avx2"), "AVX2", missing, sizeof missing);
#endif
#if defined(__FMA__)
  add_if_missing(__builtin_cpu_supports("fma"), "FMA", missing, sizeof missing);
#endif
#if defined(__BMI2__)
  add_if_missing(__builtin_cpu_supports("bmi2"), "BMI2", missing, sizeof missing);
#endif
#if defined(__AVX512F__)
  add_if_missing(__builtin_cpu_supports("avx512f"), "AVX-512F", missing, sizeof missing);
#endif
  if (missing[0] == '\0') return;
  std::fprintf(stderr,
               "attnlab: error: this build of attnlab needs a CPU with %s, which this CPU does not have; "
               "rebuild with -DATTNLAB_ARCH=x86-64 (or another -march= level this CPU has)\n",
               missing);
  std::_Exit(1);
}

}  // namespace
}  // namespace attnlab
