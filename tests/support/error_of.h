// tests/support/error_of.h — the message of the error an action throws, for tests that assert
// error texts.
//
// Contract: error_of<Error>(action) runs action and returns what() of the Error it throws, or
// "(no error)" when it returns normally. Exceptions of other types propagate (and fail the test).
#pragma once

#include <functional>
#include <string>

namespace attnlab::test {

template <class Error>
std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace attnlab::test
