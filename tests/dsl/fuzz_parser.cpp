// tests/dsl/fuzz_parser.cpp — libFuzzer target: the parser must accept or reject any bytes without
// crashing, hanging or reading out of bounds, and every diagnostic must be formattable.
// Build and run: see docs/dsl.md ("Fuzzing the parser").
#include "dsl/parser.h"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace attnlab::dsl;
  auto source = std::make_shared<SourceFile>("fuzz.attn", std::string(reinterpret_cast<const char*>(data), size));
  Diagnostics diagnostics;
  diagnostics.add_source(source);
  parse_file(*source, diagnostics);
  (void)diagnostics.format();
  ast::Expr expr;
  Diagnostics expr_diagnostics;
  parse_expression(*source, expr, expr_diagnostics);
  return 0;
}
