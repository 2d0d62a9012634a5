#include "node/suggest.h"

#include "node/registry.h"

namespace attnlab {

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return out;
}

std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates) {
  const std::string near = nearest_match(word, candidates);
  return near.empty() ? "" : "; did you mean '" + near + "'?";
}

}  // namespace attnlab
