// dsl/arithmetic.h — the language's arithmetic on numbers, the one definition every evaluator uses
// (model parameters, `with` blocks, experiment settings, --set values, ablate values).
//
// Contract (pure functions; no diagnostics of their own — the caller locates the message):
// - A Number is a whole number (int64) or a real (double).
// - parse_number(): a literal as written. Without '.', 'e' or 'E' it is a whole number, and one
//   outside int64 is an error ("integer N is out of range"); otherwise a finite double.
// - negate(): -x; -INT64_MIN is an error.
// - apply(op, a, b) for op among "+", "-", "*", "/", "div", "mod":
//   whole op whole is whole for + - *, checked for overflow ("integer overflow in '*'");
//   a real on either side makes a real, which must be finite;
//   "/" is real division (even of whole numbers); division by zero is an error;
//   "div"/"mod" take whole numbers (integers) and floor (the quotient rounds toward minus infinity and the
//   remainder has the divisor's sign, as Python's // and %): (0-7) div 2 = -4, (0-7) mod 2 = 1;
//   INT64_MIN div -1 is an overflow error (and INT64_MIN mod -1 is 0).
// Every error is a Result without a value and with a message.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace attnlab::dsl::arithmetic {

struct Number {
  bool whole = true;
  int64_t i = 0;
  double f = 0;

  double real() const { return whole ? static_cast<double>(i) : f; }
  static Number of(int64_t v) { return {true, v, 0}; }
  static Number of_real(double v) { return {false, 0, v}; }
};

struct Result {
  std::optional<Number> value;
  std::string error;  // set when value is empty

  static Result ok(Number n) { return {n, {}}; }
  static Result fail(std::string message) { return {std::nullopt, std::move(message)}; }
};

Result parse_number(std::string_view text);
Result negate(const Number& x);
Result apply(std::string_view op, const Number& a, const Number& b);

}  // namespace attnlab::dsl::arithmetic
