// dsl/ast.h — the syntax tree of the attnlab architecture language, as the parser produces it.
//
// Contract: plain data. Every node that can be the subject of a diagnostic derives from Tagged and
// carries the byte offset of its first character in its source file (-1 when unknown); the file
// itself is known from context (dsl/source.h maps offsets to line and column). Nothing here knows
// about node types, parameters or the graph IR: meaning is given by the elaborator (elaborate.h).
#pragma once

#include <boost/optional.hpp>
#include <boost/spirit/home/x3/support/ast/variant.hpp>

#include <string>
#include <vector>

namespace attnlab::dsl::ast {

namespace x3 = boost::spirit::x3;

struct Tagged {
  int offset = -1;
};

struct Number : Tagged {
  std::string text;  // as written: "512", "0.1", "1e-9"; converted (with range checks) when evaluated
};
struct String : Tagged {
  std::string value;  // escapes already resolved
};
struct Bool : Tagged {
  bool value = false;
};
struct Name : Tagged {
  std::string text;  // a possibly qualified name: "d_model", "attention.scaled_dot", "ce.tokens"
};

struct List;
struct Postfix;
struct Unary;
struct Repeat;
struct Expr;

struct Operand : x3::variant<Number, String, Bool, Name, x3::forward_ast<List>, x3::forward_ast<Postfix>,
                             x3::forward_ast<Unary>, x3::forward_ast<Repeat>, x3::forward_ast<Expr>> {
  using base_type::base_type;
  using base_type::operator=;
};

struct Operation : Tagged {
  std::string op;  // "+", "-", "*", "/", "div", "mod"
  Operand operand;
};

// A chain of operands of one precedence level: first op1 o1 op2 o2 ... (left associative).
struct Expr : Tagged {
  Operand first;
  std::vector<Operation> rest;
};

struct List : Tagged {
  std::vector<Expr> items;
};

struct Unary : Tagged {
  std::string op;  // "-"
  Operand operand;
};

// One argument of a call: `expr` (positional) or `name: expr` (named).
struct Arg : Tagged {
  boost::optional<std::string> name;
  Expr value;
};

struct CallArgs : Tagged {
  std::vector<Arg> args;
};

// primary(args)(args)...
struct Postfix : Tagged {
  Operand primary;
  std::vector<CallArgs> calls;
};

// repeat(count [, shared]) body — body must end in a call; its first positional argument is the
// value threaded through the copies.
struct Repeat : Tagged {
  Expr count;
  boost::optional<std::string> shared;  // "shared" when the copies share their weights
  Postfix body;
};

// ---- Declarations -----------------------------------------------------------------------------

struct ParamDef : Tagged {
  std::string name;
  Expr value;
};
struct ParamDecl : Tagged {
  std::vector<ParamDef> params;
};

struct UseDecl : Tagged {
  std::string slot;
  Name type;
};

struct Assign : Tagged {
  std::string name;
  Expr value;
};

struct BlockDecl : Tagged {
  std::string name;
  std::vector<std::string> params;
  std::vector<Assign> body;  // empty for the one-expression form `block f(x) = expr`
  Expr result;
};

struct InputDecl : Tagged {
  std::string name;
  std::string kind;             // "ids", "mask" or "real"
  boost::optional<Expr> bound;  // ids(vocab)
  std::vector<Expr> dims;       // a bare name that is not a parameter is a symbolic dimension ("batch")
};

struct OutputDecl : Tagged {
  std::string name;
  Expr value;
};

struct ImportDecl : Tagged {
  String path;
};

using ModelItem = x3::variant<ParamDecl, UseDecl, BlockDecl, InputDecl, OutputDecl, Assign>;

struct Model : Tagged {
  std::string name;
  std::vector<ModelItem> items;
};

// Experiment files: `model = "file.attn" with { k = v, ... }`, `name = expr` / `name: expr`
// settings, and sections `train { ... }` holding settings or bare calls (`adam(0.9, 0.98, 1e-9)`).
struct Setting : Tagged {
  std::string key;  // empty for a bare expression (a call such as noam(warmup: 4000))
  Expr value;
};

struct ModelRef : Tagged {
  String path;
  std::vector<Setting> overrides;
};

struct Section : Tagged {
  std::string name;
  std::vector<Setting> settings;
};

struct Experiment : Tagged {
  std::string name;
  std::vector<ModelRef> models;  // exactly one is valid; more are reported
  std::vector<Setting> settings;
  std::vector<Section> sections;
};

struct File {
  std::vector<ImportDecl> imports;
  std::vector<ParamDecl> params;
  std::vector<UseDecl> uses;
  std::vector<BlockDecl> blocks;
  std::vector<Model> models;
  std::vector<Experiment> experiments;
};

}  // namespace attnlab::dsl::ast
