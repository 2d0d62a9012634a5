#include "node/attrs.h"

#include <sstream>
#include <stdexcept>

namespace attnlab {

const char* to_string(AttrType type) {
  switch (type) {
    case AttrType::Int: return "int";
    case AttrType::Float: return "float";
    case AttrType::Bool: return "bool";
    case AttrType::String: return "string";
  }
  return "?";
}

AttrType type_of(const AttrValue& value) { return static_cast<AttrType>(value.index()); }

std::string to_string(const AttrValue& value) {
  struct Print {
    std::string operator()(int64_t v) const { return std::to_string(v); }
    std::string operator()(double v) const {
      std::ostringstream out;
      out.precision(10);
      out << v;
      std::string s = out.str();
      if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // keep it a float when read back
      return s;
    }
    std::string operator()(bool v) const { return v ? "true" : "false"; }
    std::string operator()(const std::string& v) const { return '"' + v + '"'; }
  };
  return std::visit(Print{}, value);
}

const AttrValue& Attrs::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) throw std::out_of_range("missing attribute '" + name + "'");
  return it->second;
}

template <class T>
static const T& typed(const Attrs& attrs, const std::string& name, AttrType want) {
  const AttrValue& v = attrs.get(name);
  if (const T* p = std::get_if<T>(&v)) return *p;
  throw std::invalid_argument("attribute '" + name + "' is " + to_string(type_of(v)) + ", expected " + to_string(want));
}

int64_t Attrs::get_int(const std::string& name) const { return typed<int64_t>(*this, name, AttrType::Int); }

double Attrs::get_float(const std::string& name) const {
  const AttrValue& v = get(name);
  if (const int64_t* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  return typed<double>(*this, name, AttrType::Float);
}

bool Attrs::get_bool(const std::string& name) const { return typed<bool>(*this, name, AttrType::Bool); }

const std::string& Attrs::get_string(const std::string& name) const {
  return typed<std::string>(*this, name, AttrType::String);
}

}  // namespace attnlab
