// core/node/suggest.h — the wording shared by every "unknown name" error: a list of the valid
// names and a suggestion of the nearest one (nearest_match in registry.h decides what is near).
#pragma once

#include <string>
#include <vector>

namespace attnlab {

// "a, b, c"
std::string join_names(const std::vector<std::string>& names);

// "; did you mean 'x'?" when a candidate is close enough to be a typo of `word`, else "".
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace attnlab
