// dsl/arithmetic: the language's one arithmetic (flooring div/mod, overflow and finiteness checks).
#include "dsl/arithmetic.h"

#include <gtest/gtest.h>

#include <limits>

namespace attnlab::dsl::arithmetic {
namespace {

constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

int64_t whole(const Result& r) {
  EXPECT_TRUE(r.value) << r.error;
  EXPECT_TRUE(r.value && r.value->whole);
  return r.value ? r.value->i : 0;
}

std::string error(const Result& r) {
  EXPECT_FALSE(r.value);
  return r.error;
}

TEST(Arithmetic, DivAndModFloorLikePython) {
  struct Case { int64_t a, b, div, mod; };
  for (const Case& c : {Case{7, 2, 3, 1}, Case{-7, 2, -4, 1}, Case{7, -2, -4, -1}, Case{-7, -2, 3, -1}, Case{6, 3, 2, 0},
                        Case{-6, 3, -2, 0}, Case{0, -5, 0, 0}, Case{kMin, 2, kMin / 2, 0}, Case{kMin, 3, -3074457345618258603, 1},
                        Case{kMax, -1, -kMax, 0}, Case{kMin, -1, 0, 0}}) {
    if (!(c.a == kMin && c.b == -1)) {
      EXPECT_EQ(whole(apply("div", Number::of(c.a), Number::of(c.b))), c.div) << c.a << " div " << c.b;
    }
    EXPECT_EQ(whole(apply("mod", Number::of(c.a), Number::of(c.b))), c.mod) << c.a << " mod " << c.b;
  }
  // (0-7) div 2 + 10 is 6, as docs/dsl.md promises (truncation would give 7).
  EXPECT_EQ(whole(apply("+", *apply("div", Number::of(-7), Number::of(2)).value, Number::of(10))), 6);
}

TEST(Arithmetic, OverflowIsAnErrorNeverATrap) {
  EXPECT_EQ(error(apply("div", Number::of(kMin), Number::of(-1))), "integer overflow in 'div'");
  EXPECT_EQ(error(apply("+", Number::of(kMax), Number::of(1))), "integer overflow in '+'");
  EXPECT_EQ(error(apply("-", Number::of(kMin), Number::of(1))), "integer overflow in '-'");
  EXPECT_EQ(error(apply("*", Number::of(int64_t{1} << 32), Number::of(int64_t{1} << 31))), "integer overflow in '*'");
  EXPECT_EQ(error(negate(Number::of(kMin))), "integer overflow in negation");
  EXPECT_EQ(whole(negate(Number::of(kMax))), -kMax);
}

TEST(Arithmetic, DivisionByZeroAndNonFiniteResults) {
  EXPECT_EQ(error(apply("div", Number::of(1), Number::of(0))), "division by zero");
  EXPECT_EQ(error(apply("mod", Number::of(1), Number::of(0))), "division by zero");
  EXPECT_EQ(error(apply("/", Number::of(1), Number::of_real(0.0))), "division by zero");
  EXPECT_EQ(error(apply("/", Number::of_real(1e308), Number::of_real(1e-308))), "arithmetic result is not finite");
  EXPECT_EQ(error(apply("*", Number::of_real(1e308), Number::of(10))), "arithmetic result is not finite");
  EXPECT_EQ(error(apply("div", Number::of_real(1.5), Number::of(1))), "'div' needs integers");
}

TEST(Arithmetic, LiteralsAndMixedKinds) {
  EXPECT_EQ(whole(parse_number("9223372036854775807")), kMax);
  EXPECT_EQ(error(parse_number("9223372036854775808")), "integer 9223372036854775808 is out of range");
  EXPECT_EQ(error(parse_number("1e999")), "number 1e999 is out of range");
  const Result half = apply("/", Number::of(1), Number::of(2));
  ASSERT_TRUE(half.value);
  EXPECT_FALSE(half.value->whole);
  EXPECT_EQ(half.value->f, 0.5);
  const Result mixed = apply("+", Number::of(1), Number::of_real(0.5));
  ASSERT_TRUE(mixed.value);
  EXPECT_EQ(mixed.value->f, 1.5);
}

}  // namespace
}  // namespace attnlab::dsl::arithmetic
