#include "node/registry.h"

#include "node/suggest.h"

#include <algorithm>
#include <numeric>

namespace attnlab {

const AttrSchema* NodeSchema::find_attr(const std::string& attr) const {
  for (const AttrSchema& a : attrs)
    if (a.name == attr) return &a;
  return nullptr;
}

Registry::~Registry() {
  // Destroy factories (whose code may live in a plugin) before the library references they sit
  // beside; Entry's member order already guarantees that, entry by entry.
  entries_.clear();
}

void Registry::add(NodeSchema schema, NodeFactory factory, std::shared_ptr<void> library, std::string origin) {
  if (schema.name.empty()) throw RegistryError(origin + ": a node type has an empty name");
  if (auto it = entries_.find(schema.name); it != entries_.end())
    throw RegistryError("duplicate node type '" + schema.name + "': provided by both " + it->second.origin +
                        " and " + origin);
  if (!factory) throw RegistryError(origin + ": node type '" + schema.name + "' has no factory");
  std::string name = schema.name;
  entries_.emplace(std::move(name), Entry{std::move(library), std::move(schema), std::move(factory), std::move(origin)});
}

bool Registry::contains(const std::string& type) const { return entries_.count(type) != 0; }

const NodeSchema& Registry::schema(const std::string& type) const {
  auto it = entries_.find(type);
  if (it == entries_.end()) throw RegistryError(unknown_type_message(type));
  return it->second.schema;
}

const std::string& Registry::origin(const std::string& type) const {
  auto it = entries_.find(type);
  if (it == entries_.end()) throw RegistryError(unknown_type_message(type));
  return it->second.origin;
}

std::vector<std::string> Registry::type_names() const {
  std::vector<std::string> names;
  for (const auto& [name, entry] : entries_) names.push_back(name);
  return names;
}


std::string Registry::unknown_type_message(const std::string& type) const {
  std::vector<std::string> names = type_names();
  std::string message = "unknown node type '" + type + "'";
  if (names.empty()) return message + "; no node types are loaded (are the plugins on the search path?)";
  return message + "; known types: " + join_names(names) + did_you_mean(type, names);
}

Attrs Registry::resolve_attrs(const std::string& type, const Attrs& given) const {
  const NodeSchema& s = schema(type);
  std::vector<std::string> valid;
  for (const AttrSchema& a : s.attrs) valid.push_back(a.name);
  for (const auto& [name, value] : given.values()) {
    const AttrSchema* a = s.find_attr(name);
    if (!a) {
      std::string message = type + ": unknown attribute '" + name + "'";
      message += valid.empty() ? "; it takes no attributes" : "; valid attributes: " + join_names(valid);
      message += did_you_mean(name, valid);
      throw RegistryError(message);
    }
    const AttrType got = type_of(value);
    if (got != a->type && !(a->type == AttrType::Float && got == AttrType::Int))
      throw RegistryError(type + ": attribute '" + name + "' must be " + to_string(a->type) + ", got " +
                          to_string(got) + " " + to_string(value));
  }
  Attrs resolved;
  for (const AttrSchema& a : s.attrs) {
    if (given.has(a.name)) {
      AttrValue v = given.get(a.name);
      if (a.type == AttrType::Float && type_of(v) == AttrType::Int) v = static_cast<double>(std::get<int64_t>(v));
      resolved.set(a.name, std::move(v));
    } else if (a.default_value) {
      resolved.set(a.name, *a.default_value);
    } else {
      throw RegistryError(type + ": missing required attribute '" + a.name + "' (" + a.doc + ")");
    }
  }
  return resolved;
}

NodeHandle Registry::create(const std::string& type, const Attrs& given) const {
  Attrs attrs = resolve_attrs(type, given);
  const Entry& entry = entries_.at(type);
  std::unique_ptr<Node> node;
  try {
    node = entry.factory(attrs, *this);
  } catch (const RegistryError&) {
    throw;
  } catch (const std::exception& e) {
    throw RegistryError(type + ": " + e.what());
  }
  if (!node) throw RegistryError(type + ": the factory returned no node");
  return NodeHandle(entry.library, std::move(node));
}

static size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::string nearest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = std::string::npos;
  for (const std::string& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_distance) best_distance = d, best = c;
  }
  // Close enough to be a typo: at most a third of the longer word changed.
  const size_t limit = std::max<size_t>(2, std::max(word.size(), best.size()) / 3);
  return best_distance <= limit ? best : std::string();
}

}  // namespace attnlab
