// dsl/arithmetic.cpp — see arithmetic.h.
#include "dsl/arithmetic.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <limits>

namespace attnlab::dsl::arithmetic {

namespace {
// Messages are built by appending: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string&&.
std::string text_of(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (std::string_view p : parts) s.append(p);
  return s;
}
}  // namespace

Result parse_number(std::string_view text) {
  const std::string t(text);
  if (t.find_first_of(".eE") == std::string::npos) {
    int64_t v = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc() || end != t.data() + t.size()) return Result::fail(text_of({"integer ", t, " is out of range"}));
    return Result::ok(Number::of(v));
  }
  const double v = std::strtod(t.c_str(), nullptr);
  if (!std::isfinite(v)) return Result::fail(text_of({"number ", t, " is out of range"}));
  return Result::ok(Number::of_real(v));
}

Result negate(const Number& x) {
  if (!x.whole) return Result::ok(Number::of_real(-x.f));
  if (x.i == std::numeric_limits<int64_t>::min()) return Result::fail("integer overflow in negation");
  return Result::ok(Number::of(-x.i));
}

Result apply(std::string_view op, const Number& a, const Number& b) {
  const std::string quoted = text_of({"'", op, "'"});
  if (op == "div" || op == "mod") {
    if (!a.whole || !b.whole) return Result::fail(text_of({quoted, " needs integers"}));
    if (b.i == 0) return Result::fail("division by zero");
    // x / -1 is never computed by the CPU: INT64_MIN / -1 traps (SIGFPE), for % as well. The
    // quotient of INT64_MIN does not fit; every remainder by -1 is 0.
    if (b.i == -1) {
      if (op == "mod") return Result::ok(Number::of(0));
      if (a.i == std::numeric_limits<int64_t>::min()) return Result::fail(text_of({"integer overflow in ", quoted}));
      return Result::ok(Number::of(-a.i));
    }
    int64_t q = a.i / b.i, r = a.i % b.i;
    if (r != 0 && ((r < 0) != (b.i < 0))) {  // floor: round the truncated quotient down
      --q;
      r += b.i;
    }
    return Result::ok(Number::of(op == "div" ? q : r));
  }
  if (op == "/") {
    if (b.real() == 0) return Result::fail("division by zero");
    const double r = a.real() / b.real();
    if (!std::isfinite(r)) return Result::fail("arithmetic result is not finite");
    return Result::ok(Number::of_real(r));
  }
  if (op != "+" && op != "-" && op != "*") return Result::fail(text_of({"unknown operator ", quoted}));
  if (a.whole && b.whole) {
    int64_t r = 0;
    const bool overflow = op == "+" ? __builtin_add_overflow(a.i, b.i, &r)
                        : op == "-" ? __builtin_sub_overflow(a.i, b.i, &r)
                                    : __builtin_mul_overflow(a.i, b.i, &r);
    if (overflow) return Result::fail(text_of({"integer overflow in ", quoted}));
    return Result::ok(Number::of(r));
  }
  const double x = a.real(), y = b.real();
  const double r = op == "+" ? x + y : op == "-" ? x - y : x * y;
  if (!std::isfinite(r)) return Result::fail("arithmetic result is not finite");
  return Result::ok(Number::of_real(r));
}

}  // namespace attnlab::dsl::arithmetic
