// dsl/elaborate.h — from a spec file to the graph IR.
//
// Contract:
// - load_program() reads a file and, transitively, the files it imports (paths relative to the
//   importing file). Syntax errors, missing files and import cycles become diagnostics.
// - elaborate() turns one model of a loaded program into an ir::GraphDef: parameters evaluated
//   (with overrides), slots bound to registry types, blocks and repeats expanded, attributes
//   checked against node schemas, then the graph validated and its shapes inferred with
//   ir::validate_and_infer at representative sizes. Every node carries the source location of the
//   call that created it. All errors found in one pass are collected; if there are any, elaborate()
//   throws DslError whose what() is the formatted text ("file:line:col: error: ..." + source line +
//   caret).
// - Limits, each with a clear error: repeat count <= kMaxRepeat, blocks nested <= kMaxBlockDepth,
//   imports nested <= kMaxImportDepth, nodes <= kMaxNodes, every tensor and parameter at most
//   kMaxTensorElements elements at the representative sizes.
// - Node naming: a node is named by the path of scopes it was created in (model-level assignment
//   target, repeat copy "<block><k>", block invocation) and its slot or type name, made unique with
//   "_N" suffixes: "encoder.encoder_layer0.sublayer.self_attention.attention". The weights of a
//   component value belong to the value: applying one value twice (or `share:` with another value,
//   or `repeat(N, shared)`) gives the nodes a common NodeDef.param_scope.
#pragma once

#include "dsl/ast.h"
#include "dsl/source.h"
#include "ir/graph.h"
#include "node/registry.h"

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace attnlab::dsl {

inline constexpr int64_t kMaxRepeat = 1024;
inline constexpr int kMaxBlockDepth = 32;
inline constexpr int kMaxImportDepth = 16;
inline constexpr int kMaxNodes = 200000;
inline constexpr int64_t kMaxTensorElements = int64_t{1} << 32;

struct LoadedFile {
  std::shared_ptr<const SourceFile> source;
  std::filesystem::path path;  // as opened
  ast::File ast;
};

// A spec file and its imports. files.back() is the file that was asked for; the others are its
// imports, each listed once, dependencies first.
struct Program {
  std::vector<LoadedFile> files;
  Diagnostics diagnostics;  // syntax and import errors

  const LoadedFile& main() const { return files.back(); }
};

// Never throws for bad input: problems are in program.diagnostics. Throws std::runtime_error only
// when `path` itself cannot be read.
std::unique_ptr<Program> load_program(const std::filesystem::path& path);

// An override NAME=VALUE: VALUE is an expression evaluated among the model's parameters. Written
// on the command line (source "--set"/"--use") or in an experiment file's `with { ... }`.
struct Override {
  std::string name;
  ast::Expr value;
  std::shared_ptr<const SourceFile> source;
  int name_offset = 0;
  bool slot_only = false;  // from --use: NAME must be a slot
};

// Parses "NAME=VALUE" given to `flag` ("--set" or "--use"); throws DslError when malformed.
Override parse_override(const std::string& text, const std::string& flag);

// The representative sizes shape inference uses for symbolic input dimensions.
ir::DimBindings default_dims();

struct ElaborateOptions {
  std::string model;               // which model of the file; "" for the first
  std::vector<Override> overrides; // --set (parameters or slots) and --use (slots), in order
  ir::DimBindings dims = default_dims();
};

struct ElaboratedModel {
  std::string name;
  ir::GraphDef graph;
  ir::InferredGraph shapes;
  std::vector<std::pair<std::string, AttrValue>> params;  // resolved values, in declaration order
  std::vector<std::pair<std::string, std::string>> slots; // slot -> node type (or block), in declaration order
  std::vector<std::string> blocks;  // the model's blocks, which a slot may bind (sorted)

  // The resolved value of the whole-number parameter `name`, or `fallback` when the model has no
  // such parameter (or it is not a whole number).
  int64_t integer_param(const std::string& name, int64_t fallback) const;
};

// Throws DslError carrying every diagnostic (including the program's syntax errors).
ElaboratedModel elaborate(const Program& program, const Registry& registry, const ElaborateOptions& options);

// Convenience: load_program + elaborate; throws DslError for unreadable files too.
ElaboratedModel elaborate_file(const std::filesystem::path& path, const Registry& registry,
                               const ElaborateOptions& options);

}  // namespace attnlab::dsl
