// core/node/registry.h — the node types known to this process, and where each came from.
//
// Contract:
// - add() registers a schema and a factory under the schema's name. A second type of the same
//   name is an error naming both libraries that provide it.
// - create() fills in attribute defaults, rejects unknown, missing and mistyped attributes (naming
//   them and listing the valid ones), then calls the factory. An unknown type name is an error
//   listing the known types and the nearest match.
// - Each type remembers its library; the library stays loaded while the registry or any node
//   created from it lives (NodeHandle holds a reference). No central list of types exists anywhere
//   else: plugins own their node types.
#pragma once

#include "node/node.h"

#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab {

// Errors in what a user asked for (unknown type, bad attribute, bad plugin). The message is
// complete and meant for the user.
struct RegistryError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Registry;
// Builds an instance from checked attributes. The registry creating it is passed along so that a
// node may create the node types it composes (attention creates its positional scheme); it is
// used during construction only.
using NodeFactory = std::function<std::unique_ptr<Node>(const Attrs& attrs, const Registry& registry)>;

// A node instance together with a reference to the library its code lives in. Whatever happens
// to a handle (destruction, move-assignment, reset), the node is destroyed before the library
// reference is dropped: the node's destructor is code inside that library.
class NodeHandle {
 public:
  NodeHandle() = default;
  NodeHandle(std::shared_ptr<void> library, std::unique_ptr<Node> node)
      : library_(std::move(library)), node_(std::move(node)) {}
  NodeHandle(NodeHandle&&) noexcept = default;  // construction: nothing old to release
  NodeHandle& operator=(NodeHandle&& other) noexcept {
    if (this != &other) {
      reset();
      library_ = std::move(other.library_);
      node_ = std::move(other.node_);
    }
    return *this;
  }
  ~NodeHandle() { reset(); }

  void reset() {
    node_.reset();
    library_.reset();
  }
  Node* get() const { return node_.get(); }
  Node* operator->() const { return node_.get(); }
  Node& operator*() const { return *node_; }
  explicit operator bool() const { return node_ != nullptr; }

 private:
  std::shared_ptr<void> library_;
  std::unique_ptr<Node> node_;
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  ~Registry();

  // `library` keeps the code alive; `origin` names it in messages and in `attnlab plugins`
  // (the library's file name, or "builtin" for types registered by the executable itself).
  void add(NodeSchema schema, NodeFactory factory, std::shared_ptr<void> library, std::string origin);

  bool contains(const std::string& type) const;
  const NodeSchema& schema(const std::string& type) const;  // throws RegistryError (unknown type)
  const std::string& origin(const std::string& type) const;
  std::vector<std::string> type_names() const;  // sorted

  // Defaults filled in, types checked; throws RegistryError.
  Attrs resolve_attrs(const std::string& type, const Attrs& given) const;
  NodeHandle create(const std::string& type, const Attrs& given) const;

  // "unknown node type 'x'; known types: a, b, c; did you mean 'y'?"
  std::string unknown_type_message(const std::string& type) const;

 private:
  struct Entry {
    std::shared_ptr<void> library;  // declared first: destroyed last
    NodeSchema schema;
    NodeFactory factory;
    std::string origin;
  };
  std::map<std::string, Entry> entries_;
};

// The closest candidate by edit distance, or "" when none is reasonably close.
std::string nearest_match(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace attnlab
