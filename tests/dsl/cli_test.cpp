// The check, graph and params commands, run as a user would (the built attnlab executable).
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <cstdio>
#include <string>
#include <sys/wait.h>

namespace {

struct Result {
  int exit_code;
  std::string out;  // stdout and stderr together when merge_stderr
};

Result run(const std::string& args, bool merge_stderr = true) {
  const std::string command = std::string(ATTNLAB_EXE) + " " + args + (merge_stderr ? " 2>&1" : " 2>/dev/null");
  FILE* pipe = popen(command.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

const std::string kBase = std::string(ATTNLAB_SOURCE_DIR) + "/experiments/transformer_base.attn";

TEST(Cli, CheckAcceptsTheBaseModel) {
  Result r = run("check " + kBase);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("ok: model transformer_base, "), std::string::npos) << r.out;
}

TEST(Cli, CheckReportsLocatedErrorsAndExits1) {
  Result r = run("check " + std::string(DSL_TEST_DIR) + "/broken/unknown_name.attn");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("unknown_name.attn:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(": error: unknown name 'd_modle'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("^\n"), std::string::npos) << r.out;
}

TEST(Cli, CheckWithOverrides) {
  EXPECT_EQ(run("check " + kBase + " --set d_k=16 --use posenc=posenc.learned").exit_code, 0);
  Result r = run("check " + kBase + " --set heads=0");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("division by zero"), std::string::npos) << r.out;
  r = run("check " + kBase + " --use attention=attention.scaled_dott");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("did you mean 'attention.scaled_dot'?"), std::string::npos) << r.out;
}

TEST(Cli, CheckMissingFile) {
  Result r = run("check /nonexistent/model.attn");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("cannot read '/nonexistent/model.attn'"), std::string::npos) << r.out;
}

TEST(Cli, ParamsJsonMatchesTable3) {
  auto total = [](const std::string& extra) {
    Result r = run("params " + kBase + " --json " + extra, false);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_TRUE(j.contains("by_component"));
    return j["total"].get<int64_t>();
  };
  EXPECT_EQ(total(""), 63045632);
  EXPECT_EQ(total("--set layers=2"), 18944000 + 2 * (3150336 + 4199936));
  EXPECT_GT(total("--set d_model=1024 --set d_ff=4096 --set heads=16"), 170000000);
  Result r = run("params " + kBase + " --json", false);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["by_component"]["embed"].get<int64_t>(), 37000 * 512);
}

TEST(Cli, ParamsText) {
  Result r = run("params " + kBase);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("transformer_base: 63,045,632 parameters (63.0M)"), std::string::npos) << r.out;
}

TEST(Cli, GraphFormats) {
  Result text = run("graph " + kBase, false);
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_NE(text.out.find("encoder.encoder_layer0.sublayer.self_attention.attention = attention.scaled_dot("), std::string::npos);
  Result dot = run("graph " + kBase + " --format dot", false);
  EXPECT_EQ(dot.exit_code, 0);
  EXPECT_EQ(dot.out.rfind("digraph", 0), 0u) << dot.out.substr(0, 200);
  Result pbtxt = run("graph " + kBase + " --format pbtxt", false);
  EXPECT_EQ(pbtxt.exit_code, 0);
  EXPECT_NE(pbtxt.out.find("param_scope: \"embed.embedding\""), std::string::npos);
  EXPECT_NE(run("graph " + kBase + " --format svg").exit_code, 0);
}

// An experiment file in a fresh directory next to a copy of the base model: `exp.attn` holding
// experiment `small` of that model `with` the overrides `model_with`, then `sections`. Returns
// the experiment file's path; written again on each call, so a test can vary it.
std::string small_experiment(const std::string& dir_name, const std::string& model_with, const std::string& sections) {
  const std::string dir = ::testing::TempDir() + dir_name;
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kBase, dir + "/transformer_base.attn", std::filesystem::copy_options::overwrite_existing);
  const std::string exp = dir + "/exp.attn";
  std::ofstream(exp) << "experiment small {\n  model = \"transformer_base.attn\" with { " << model_with << " }\n"
                     << sections << "}\n";
  return exp;
}

TEST(Cli, CheckAndParamsOnAnExperimentFile) {
  const std::string exp = small_experiment("attnlab_cli_experiment", "layers = 2, d_model = 64, d_ff = 128, vocab = 100",
                                           "  train { adam(0.9, 0.98, 1e-9), label_smoothing: 0.1 }\n"
                                           "  ablate { heads = [1, 2] }\n");
  Result r = run("check " + exp + " --set train.max_steps=200 --set layers=1");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  Result p = run("params " + exp + " --json --set layers=1", false);
  ASSERT_EQ(p.exit_code, 0) << p.out;
  // vocab 100 x 64 embedding + 1 encoder layer + 1 decoder layer at d_model 64, d_ff 128.
  const int64_t attention = 4 * 64 * 64, ffn = 2 * 64 * 128 + 128 + 64, norm = 2 * 64;
  EXPECT_EQ(nlohmann::json::parse(p.out)["total"].get<int64_t>(),
            100 * 64 + (attention + ffn + 2 * norm) + (2 * attention + ffn + 3 * norm));
  r = run("check " + exp + " --set trian.max_steps=200");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("unknown section 'trian'"), std::string::npos) << r.out;
  std::filesystem::remove_all(std::filesystem::path(exp).parent_path());
}

// check reads an experiment's train and decode sections as run does: a misspelt setting, a bad
// schedule or a missing stopping rule fails before any data is read.
TEST(Cli, CheckReadsAnExperimentsTrainAndDecodeSettings) {
  const std::string model = "layers = 1, d_model = 64, d_ff = 128, vocab = 100";
  const std::string exp = small_experiment("attnlab_cli_settings", model, "  train { noam(warmup: 100), max_stepz: 200 }\n");
  Result r = run("check " + exp);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("exp.attn:3:30: error: unknown train setting 'max_stepz'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\n  train { noam(warmup: 100), max_stepz: 200 }\n                             ^\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("did you mean 'max_steps'?"), std::string::npos) << r.out;

  small_experiment("attnlab_cli_settings", model, "  train { noam(warmup: 100) }\n");
  r = run("check " + exp);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("train: no stopping rule"), std::string::npos) << r.out;
  EXPECT_EQ(run("check " + exp + " --set train.max_steps=200").exit_code, 0);
  r = run("check " + exp + " --set train.max_steps=200 --set 'train.noam=noam(warmup: 0)'");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("--set train.noam=noam(warmup: 0):1:1: error: train: noam schedule: warmup must be >= 1 step"), std::string::npos)
      << r.out;
  r = run("check " + exp + " --set train.max_steps=200 --set decode.beam=0");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("beam"), std::string::npos) << r.out;
  std::filesystem::remove_all(std::filesystem::path(exp).parent_path());
}

}  // namespace
