// tests/support/run_command.h — run a shell command from a test and capture what it printed.
//
// Contract: run_command(cmd) runs `cmd` through /bin/sh with stdout and stderr redirected to
// temporary files, waits for it, and returns the exit code (or 128+signal when killed) and both
// streams. Test-only: commands come from the tests themselves.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace attnlab::test {

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A fresh empty directory under the system temporary directory; removed by the caller if wanted.
inline std::filesystem::path make_temp_dir(const std::string& prefix = "attnlab-test-") {
  std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "XXXXXX")).string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed for " + pattern);
  return pattern;
}

inline CommandResult run_command(const std::string& command) {
  const std::filesystem::path dir = make_temp_dir("attnlab-cmd-");
  const std::string full = command + " >" + (dir / "out").string() + " 2>" + (dir / "err").string() + " </dev/null";
  const int status = std::system(full.c_str());
  CommandResult result;
  if (status != -1 && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  else if (status != -1 && WIFSIGNALED(status)) result.exit_code = 128 + WTERMSIG(status);
  result.out = read_text_file(dir / "out");
  result.err = read_text_file(dir / "err");
  std::filesystem::remove_all(dir);
  return result;
}

}  // namespace attnlab::test
