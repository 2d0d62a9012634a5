#include "node/attrs.h"

#include <cctype>
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

std::string format_type_call(const std::string& type, const Attrs& attrs) {
  if (attrs.values().empty()) return type;
  std::string out = type + "(";
  bool first = true;
  for (const auto& [name, value] : attrs.values()) {
    out += (first ? "" : ", ") + name + ": " + to_string(value);
    first = false;
  }
  return out + ")";
}

std::pair<std::string, Attrs> parse_type_call(const std::string& text) {
  auto bad = [&](size_t at, const std::string& what) {
    return std::invalid_argument("'" + text + "' at character " + std::to_string(at + 1) + ": " + what +
                                 "; expected TYPE or TYPE(name: value, ...)");
  };
  const size_t open = text.find('(');
  std::string type = text.substr(0, open);
  while (!type.empty() && type.back() == ' ') type.pop_back();
  if (type.empty()) throw bad(0, "no type name");
  Attrs attrs;
  if (open == std::string::npos) return {type, attrs};
  size_t i = open + 1;
  auto skip = [&] {
    while (i < text.size() && text[i] == ' ') ++i;
  };
  auto is_name = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  skip();
  if (i < text.size() && text[i] == ')') ++i;
  else
    for (;;) {
      skip();
      const size_t start = i;
      while (i < text.size() && is_name(text[i])) ++i;
      if (i == start) throw bad(i, "an attribute name is missing");
      const std::string name = text.substr(start, i - start);
      skip();
      if (i >= text.size() || text[i] != ':') throw bad(i, "':' is missing after '" + name + "'");
      ++i;
      skip();
      const size_t value_start = i;
      if (i < text.size() && text[i] == '"') {
        const size_t close = text.find('"', i + 1);
        if (close == std::string::npos) throw bad(i, "an unterminated string");
        attrs.set(name, text.substr(i + 1, close - i - 1));
        i = close + 1;
      } else {
        while (i < text.size() && text[i] != ',' && text[i] != ')' && text[i] != ' ') ++i;
        const std::string word = text.substr(value_start, i - value_start);
        if (word == "true" || word == "false") {
          attrs.set(name, word == "true");
        } else {
          size_t used = 0;
          try {
            if (word.find_first_of(".eEn") != std::string::npos) {
              const double v = std::stod(word, &used);
              if (used == word.size()) attrs.set(name, v);
            } else {
              const long long v = std::stoll(word, &used);
              if (used == word.size()) attrs.set(name, static_cast<int64_t>(v));
            }
          } catch (const std::exception&) {
            used = 0;
          }
          if (word.empty() || used != word.size()) throw bad(value_start, "'" + word + "' is not a value");
        }
      }
      skip();
      if (i < text.size() && text[i] == ',') {
        ++i;
        continue;
      }
      if (i < text.size() && text[i] == ')') {
        ++i;
        break;
      }
      throw bad(i, "',' or ')' is missing");
    }
  skip();
  if (i != text.size()) throw bad(i, "text after ')'");
  return {type, attrs};
}

}  // namespace attnlab
