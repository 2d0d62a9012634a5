// Tests of core/task: each task's contract checked against elaborated graphs, with located errors.
#include "task/task.h"

#include "dsl/experiment.h"
#include "support/installed_plugins.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

namespace attnlab {
namespace {

namespace fs = std::filesystem;

const Registry& registry() { return test::plugins_beside_executable(); }

fs::path write_file(const std::string& name, const std::string& text) {
  const fs::path dir = fs::temp_directory_path() / ("attnlab-task-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / name) << text;
  return dir / name;
}

// The language's representative sizes, and one for the symbol `other` some tests declare.
dsl::ElaboratedModel elaborate(const fs::path& file) {
  dsl::ElaborateOptions options;
  options.dims["other"] = 6;  // as seq_len: shapes agree, only the symbols differ
  return dsl::elaborate_file(file, registry(), options);
}

std::string check_error(const task::Task& task, const dsl::ElaboratedModel& model) {
  try {
    task::check_graph(task, model.graph);
  } catch (const dsl::DslError& e) {
    return e.what();
  }
  return "";
}

// A decoder-only model whose input is misnamed ("ids" for input_ids).
const char* kMisnamedLm =
    "model lm {\n"
    "  param vocab = 10, block_size = 8\n"
    "  input ids: ids(vocab)[batch, seq_len]\n"
    "  input labels: ids(vocab)[batch, seq_len]\n"
    "  embed = embedding(vocab, 8)\n"
    "  logits = embedding.project(embed(ids), vocab: vocab, dim: 8, share: embed)\n"
    "  ce = loss.cross_entropy(logits, labels)\n"
    "  output loss = ce.loss\n"
    "  output tokens = ce.tokens\n"
    "  output correct = ce.correct\n"
    "  output logits = logits\n"
    "}\n";

TEST(TaskContract, TheRepositoryModelsFitTheirTasks) {
  const fs::path experiments = fs::path(ATTNLAB_SOURCE_DIR) / "experiments";
  for (const char* file : {"transformer_base.attn", "transformer_prenorm.attn"})
    EXPECT_EQ(check_error(task::translation(), elaborate(experiments / file)), "") << file;
}

TEST(TaskContract, AMisnamedInputIsALocatedErrorNamingWhatTheTaskExpects) {
  const fs::path file = write_file("misnamed.attn", kMisnamedLm);
  const std::string error = check_error(task::language_model(), elaborate(file));
  EXPECT_NE(error.find(file.string() + ":1:1: error: the language_model task needs model 'lm' to declare input 'input_ids': "
                                       "ids[batch, length] (a block of token ids); the model's inputs: ids, labels"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("model lm {\n^"), std::string::npos) << error;  // the quoted line and caret
}

TEST(TaskContract, ATranslationModelIsNotALanguageModel) {
  const fs::path base = fs::path(ATTNLAB_SOURCE_DIR) / "experiments/transformer_base.attn";
  const std::string error = check_error(task::language_model(), elaborate(base));
  EXPECT_NE(error.find("error: the language_model task needs model 'transformer_base' to declare input 'input_ids'"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("declare input 'labels'"), std::string::npos) << error;
}

TEST(TaskContract, AMissingOutputSuggestsTheNearestName) {
  std::string text = kMisnamedLm;
  text.replace(text.find("output logits = logits"), 22, "output logit = logits");
  const fs::path file = write_file("no_logits.attn", text);
  const std::string error = check_error(task::translation(), elaborate(file));
  EXPECT_NE(error.find(file.string() + ":1:1: error: the translation task needs model 'lm' to declare output 'logits' "),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("did you mean 'logit'?"), std::string::npos) << error;
}

TEST(TaskContract, AnInputOfTheWrongKindOrDimensionsIsReportedAtItsDeclaration) {
  std::string text = kMisnamedLm;
  text.replace(text.find("input ids: ids(vocab)[batch, seq_len]"), 37, "input input_ids: ids(vocab)[batch, seq_len]");
  text.replace(text.find("embed(ids)"), 10, "embed(input_ids)");
  text.replace(text.find("input labels: ids(vocab)[batch, seq_len]"), 40, "input labels: ids(vocab)[batch, other]");
  const fs::path file = write_file("dims.attn", text);
  const std::string error = check_error(task::language_model(), elaborate(file));
  EXPECT_NE(error.find(file.string() + ":4:9: error: the length of input 'labels' is 'other' but that of input 'input_ids' is 'seq_len'"),
            std::string::npos)
      << error;
}

TEST(TaskContract, ParamsTheTrainerSetsAreChecked) {
  std::string text = kMisnamedLm;
  text.replace(text.find("param vocab = 10, block_size = 8"), 32, "param vocabulary = 10, block_size = 8");
  text.replace(text.find("ids(vocab)"), 10, "ids(vocabulary)");
  text.replace(text.find("ids(vocab)"), 10, "ids(vocabulary)");
  text.replace(text.find("embedding(vocab, 8)"), 19, "embedding(vocabulary, 8)");
  text.replace(text.find("vocab: vocab"), 12, "vocab: vocabulary");
  const fs::path model_file = write_file("params.attn", text);
  const fs::path experiment_file = write_file("params_experiment.attn",
                                              "experiment e {\n  model = \"params.attn\"\n  task = language_model\n"
                                              "  train { dropout: 0.1 }\n}\n");
  const dsl::ExperimentSpec spec = dsl::load_experiment(experiment_file);
  EXPECT_EQ(&task::task_of(spec), &task::language_model());
  try {
    task::check_params(task::language_model(), elaborate(model_file), spec);
    FAIL() << "no error";
  } catch (const dsl::DslError& e) {
    const std::string error = e.what();
    EXPECT_NE(error.find(model_file.string() + ":1:1: error: the language_model task needs model 'lm' to declare `param vocab`"),
              std::string::npos)
        << error;
    EXPECT_NE(error.find(experiment_file.string() + ":4:11: error: train.dropout sets the model's parameter 'dropout', but model "
                                                    "'lm' declares none"),
              std::string::npos)
        << error;
  }
}

TEST(TaskContract, AnUnknownTaskIsALocatedError) {
  write_file("lm.attn", kMisnamedLm);
  const fs::path file = write_file("unknown_task.attn", "experiment e {\n  model = \"lm.attn\"\n  task = language_modle\n}\n");
  try {
    (void)task::task_of(dsl::load_experiment(file));
    FAIL() << "no error";
  } catch (const dsl::DslError& e) {
    EXPECT_NE(std::string(e.what()).find(file.string() + ":3:3: error: unknown task 'language_modle'; tasks: translation, "
                                                          "language_model; did you mean 'language_model'?"),
              std::string::npos)
        << e.what();
  }
}

TEST(TaskContract, FeedsBindTheGraphsOwnSizeSymbols) {
  const fs::path file = write_file("feeds.attn", [] {
    std::string text = kMisnamedLm;
    text.replace(text.find("input ids: ids(vocab)[batch, seq_len]"), 37, "input input_ids: ids(vocab)[rows, seq_len]");
    text.replace(text.find("embed(ids)"), 10, "embed(input_ids)");
    text.replace(text.find("[batch, seq_len]"), 16, "[rows, seq_len]");
    return text;
  }());
  const dsl::ElaboratedModel model = dsl::elaborate_file(file, registry(), {.model = "", .overrides = {}, .dims = {{"rows", 2}, {"seq_len", 3}}});
  Tensor x({3, 4}), y({3, 4});
  const task::TrainingFeeds feeds = task::language_model().feeds(model.graph, x.view(), y.view());
  EXPECT_EQ(feeds.dims, (ir::DimBindings{{"rows", 3}, {"seq_len", 4}}));
  EXPECT_EQ(feeds.feeds.size(), 2u);
  EXPECT_TRUE(feeds.feeds.count("input_ids") && feeds.feeds.count("labels"));
  EXPECT_EQ(task::language_model().feed_names(), (std::vector<std::string>{"input_ids", "labels"}));
}

TEST(TaskContract, DescribeNamesEveryPart) {
  const std::string text = task::translation().describe();
  for (const char* part : {"input 'src': ids[batch, source length]", "output 'memory'", "vocab (required)", "batches:", "validation:",
                           "decoding:"})
    EXPECT_NE(text.find(part), std::string::npos) << part << "\n" << text;
}

}  // namespace
}  // namespace attnlab
