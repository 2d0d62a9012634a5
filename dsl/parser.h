// dsl/parser.h — the parser of the architecture language (Boost.Spirit X3; grammar in parser.cpp
// and in docs/dsl.md).
//
// Contract:
// - parse_file() never throws on bad input and never crashes or hangs: syntax errors are added to
//   `diagnostics` (several per pass: after an error the parser resynchronises at the next
//   declaration) and the returned tree holds the declarations that parsed. Inputs larger than
//   kMaxSourceBytes (dsl/source.h) or nested deeper than kMaxNesting brackets are rejected with one error.
// - parse_expression() parses a whole string as one expression (command-line override values).
#pragma once

#include "dsl/ast.h"
#include "dsl/source.h"

namespace attnlab::dsl {

inline constexpr int kMaxNesting = 64;

ast::File parse_file(const SourceFile& source, Diagnostics& diagnostics);

// Parses source.text() from byte `start` to the end as exactly one expression; returns false (with
// a diagnostic) when it is not one.
bool parse_expression(const SourceFile& source, ast::Expr& expr, Diagnostics& diagnostics, int start = 0);

}  // namespace attnlab::dsl
