// core/node/attrs.h — typed node attributes.
//
// Contract: an attribute value is an int, a float, a bool or a string. The registry fills in
// schema defaults and checks types before a node is constructed, so a node's constructor reads its
// attributes with the typed getters and never sees a missing or mistyped one. An int is accepted
// where a float is declared (it is widened); nothing else converts.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace attnlab {

enum class AttrType { Int, Float, Bool, String };
const char* to_string(AttrType type);  // "int", "float", "bool", "string"

using AttrValue = std::variant<int64_t, double, bool, std::string>;
AttrType type_of(const AttrValue& value);
std::string to_string(const AttrValue& value);  // as the language would write it: 3, 0.1, true, "x"

class Attrs {
 public:
  Attrs() = default;
  Attrs(std::initializer_list<std::pair<const std::string, AttrValue>> values) : values_(values) {}

  bool has(const std::string& name) const { return values_.count(name) != 0; }
  void set(const std::string& name, AttrValue value) { values_[name] = std::move(value); }
  const AttrValue& get(const std::string& name) const;  // throws std::out_of_range naming it

  int64_t get_int(const std::string& name) const;
  double get_float(const std::string& name) const;  // ints widen
  bool get_bool(const std::string& name) const;
  const std::string& get_string(const std::string& name) const;

  const std::map<std::string, AttrValue>& values() const { return values_; }

 private:
  std::map<std::string, AttrValue> values_;
};

// A node type with attributes as one string value, "posenc.t5(max_distance: 64, num_buckets: 16)":
// how an attribute names a component another node creates (attention's `posenc`, from a slot bound
// with attributes). Attributes are written as to_string(AttrValue) writes them, in name order;
// without attributes the text is the bare type name. parse_type_call is the inverse and accepts
// exactly that form (spaces optional); a malformed text throws std::invalid_argument saying where.
std::string format_type_call(const std::string& type, const Attrs& attrs);
std::pair<std::string, Attrs> parse_type_call(const std::string& text);

}  // namespace attnlab
