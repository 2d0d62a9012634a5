// tests/support/allocation_counter.h — counts every global operator new in a test binary.
//
// Contract: link tests/support/allocation_counter.cpp into exactly one test executable's sources;
// it replaces the global operator new/delete family for the whole process (libattnlab_core and
// the plugins included), and allocation_count() returns how many allocations have been made so
// far. Tests compare counts before and after the code under test.
#pragma once

namespace attnlab::test {

long allocation_count();

}  // namespace attnlab::test
