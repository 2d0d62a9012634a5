#include "../support/error_of.h"
#include "data/parallel_text.h"
#include "data/synthetic.h"
#include "data/tokenizer.h"
#include "test_files.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <functional>

using namespace attnlab::data;

namespace {

std::string error_of(const std::function<void()>& action) { return attnlab::test::error_of<DataError>(action); }

std::vector<std::string_view> views(const std::vector<std::string>& lines) { return {lines.begin(), lines.end()}; }

}  // namespace

TEST(CharVocab, EveryCharacterInByteOrderAfterTheSpecials) {
  const auto vocab = build_char_vocab("ba\nä a");
  EXPECT_EQ(vocab->kind(), "char");
  EXPECT_EQ(vocab->vocab_size(), kFirstPieceId + 5);  // "\n", " ", "a", "b", "ä" (two bytes, one character)
  EXPECT_EQ(vocab->piece(kFirstPieceId), "\n");
  EXPECT_EQ(vocab->piece(kFirstPieceId + 4), "ä");
  EXPECT_EQ(vocab->encode("ab?"), (std::vector<int>{kFirstPieceId + 2, kFirstPieceId + 3, kUnkId}));
  EXPECT_EQ(vocab->decode(vocab->encode("a\nä")), "a\nä");
  // The serialized vocabulary holds its line break and multi-byte character, and loads back equal.
  const auto loaded = load_tokenizer(vocab->serialize());
  EXPECT_EQ(loaded->kind(), "char");
  EXPECT_EQ(loaded->serialize(), vocab->serialize());
  EXPECT_EQ(loaded->encode("bä\n"), vocab->encode("bä\n"));
  std::string truncated = vocab->serialize();
  truncated.pop_back();
  truncated.pop_back();  // the last character (both bytes of "ä"): the list is one short of its header
  EXPECT_THROW(load_tokenizer(truncated), DataError);
}

TEST(WordVocab, SpecialIdsAndCountOrder) {
  const std::vector<std::string> text = {"b a a", "c b a", "rare"};
  const auto vocab = build_word_vocab(views(text));
  EXPECT_EQ(vocab->kind(), "word");
  EXPECT_EQ(vocab->piece(kPadId), "<pad>");
  EXPECT_EQ(vocab->piece(kUnkId), "<unk>");
  EXPECT_EQ(vocab->piece(kBosId), "<s>");
  EXPECT_EQ(vocab->piece(kEosId), "</s>");
  // a (3) before b (2), then c and rare (1 each) in byte order.
  EXPECT_EQ(vocab->vocab_size(), 8);
  EXPECT_EQ(vocab->piece(4), "a");
  EXPECT_EQ(vocab->piece(5), "b");
  EXPECT_EQ(vocab->piece(6), "c");
  EXPECT_EQ(vocab->piece(7), "rare");
  EXPECT_EQ(vocab->encode("a  b\tc unseen"), (std::vector<int>{4, 5, 6, kUnkId}));
}

TEST(WordVocab, MinCountMapsRareWordsToUnk) {
  const std::vector<std::string> text = {"the dog runs", "the cat runs", "the bird"};
  WordVocabOptions options;
  options.min_count = 2;
  const auto vocab = build_word_vocab(views(text), options);
  EXPECT_EQ(vocab->vocab_size(), 6);  // specials + the, runs
  EXPECT_EQ(vocab->encode("the dog runs"), (std::vector<int>{4, kUnkId, 5}));
  EXPECT_EQ(vocab->decode({kBosId, 4, kUnkId, 5, kEosId, kPadId}), "the <unk> runs");
  options.max_size = 5;
  EXPECT_EQ(build_word_vocab(views(text), options)->vocab_size(), 5);
}

TEST(WordVocab, RoundTripThroughBytes) {
  const std::vector<std::string> text = {"zwei männer gehen .", "ein mann geht .", "männer &apos;s"};
  const auto vocab = build_word_vocab(views(text));
  const std::string bytes = vocab->serialize();
  const auto loaded = load_tokenizer(bytes);
  EXPECT_EQ(loaded->kind(), "word");
  EXPECT_EQ(loaded->vocab_size(), vocab->vocab_size());
  for (int id = 0; id < vocab->vocab_size(); ++id) EXPECT_EQ(loaded->piece(id), vocab->piece(id));
  EXPECT_EQ(loaded->encode("zwei männer geht . nie"), vocab->encode("zwei männer geht . nie"));
  EXPECT_EQ(loaded->serialize(), bytes);
}

TEST(TokenizerBytes, CorruptBytesAreClearErrors) {
  const std::vector<std::string> text = {"a b c"};
  const std::string bytes = build_word_vocab(views(text))->serialize();
  EXPECT_EQ(error_of([] { load_tokenizer("garbage"); }), "tokenizer bytes: not an attnlab tokenizer");
  EXPECT_EQ(error_of([] { load_tokenizer("attnlab-tokenizer 1 word 3"); }), "tokenizer bytes: truncated header");
  EXPECT_EQ(error_of([&] { load_tokenizer(bytes.substr(0, bytes.size() - 1)); }),
            "tokenizer bytes: truncated word list");
  EXPECT_EQ(error_of([&] { load_tokenizer(bytes.substr(0, bytes.size() - 2)); }),
            "tokenizer bytes: word list has 2 entries, header says 3");
  EXPECT_EQ(error_of([] { load_tokenizer("attnlab-tokenizer 1 bytes 0\n"); }),
            "tokenizer bytes: unknown tokenizer kind 'bytes'");
  EXPECT_EQ(error_of([] { load_tokenizer("attnlab-tokenizer 1 word x\n"); }), "tokenizer bytes: malformed header");
  EXPECT_EQ(error_of([] { load_tokenizer("attnlab-tokenizer 1 sentencepiece 10\nshort"); }),
            "tokenizer bytes: SentencePiece model has 5 bytes, header says 10");
  const std::string message = error_of([] { load_tokenizer("attnlab-tokenizer 1 sentencepiece 9\nnot model"); });
  EXPECT_EQ(message.rfind("tokenizer bytes: not a valid SentencePiece model", 0), 0u) << message;
}

// Found by fuzzing (tests/fuzz/fuzz_sentencepiece.cpp): a model with a piece that begins with a NUL
// byte (a zero-length key to SentencePiece's trie builder, Darts) makes SentencePiece throw instead
// of returning a status. The exception left the module uncaught (std::terminate, SIGABRT); now it
// is the model error.
TEST(TokenizerBytes, AModelThatBreaksSentencePiecesTrieIsAClearError) {
  const std::string model(
      "\012\016\012\005<pad>\025\000\000\000\000\030\003\012\016\012\005<unk>\025\020\000\000\000\030"
      "\002\012\014\012\003<s>\025\000\000\000\000\030\003\012\015\012\004</s>\025\000\000\000\000"
      "\030\003\012\013\012\004\342\226\201a\025\000\000\000\200\012\011\012\002inU\000\000\200\277"
      "\012\013\012\004\000\000\000s\025\000\000\000\300\012\013\012\004\342\226\201t\025\000\000@"
      "\300\012\011\012\002an\025\000\000\200\300\212\013\012\004\010\012\001\220\302\000\000\025A"
      "j\010\012\001x\025\000\010\012\001\245\352\377\377w=\365\367y\022\000",
      156);
  const std::string message = error_of(
      [&] { load_tokenizer("attnlab-tokenizer 1 sentencepiece " + std::to_string(model.size()) + "\n" + model); });
  EXPECT_EQ(message.rfind("tokenizer bytes: not a valid SentencePiece model: SentencePiece failed: ", 0), 0u) << message;
  EXPECT_NE(message.find("failed to insert key: zero-length key"), std::string::npos) << message;
}

class SentencePieceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SyntheticOptions options;
    options.train_size = 3000;
    task_ = new SyntheticTask(generate_synthetic_task(options));
  }
  static void TearDownTestSuite() { delete task_; }
  static SyntheticTask* task_;
};
SyntheticTask* SentencePieceTest::task_ = nullptr;

TEST_F(SentencePieceTest, TrainsJointBpeWithAttnlabSpecialIds) {
  SentencePieceOptions options;
  options.vocab_size = 300;
  const auto sp = train_sentencepiece(joint_sentences(task_->train), options);
  EXPECT_EQ(sp->kind(), "sentencepiece");
  EXPECT_LE(sp->vocab_size(), 300);
  EXPECT_GT(sp->vocab_size(), 100);
  EXPECT_EQ(sp->piece(kPadId), "<pad>");
  EXPECT_EQ(sp->piece(kUnkId), "<unk>");
  EXPECT_EQ(sp->piece(kBosId), "<s>");
  EXPECT_EQ(sp->piece(kEosId), "</s>");
  for (const SentencePair& pair : task_->dev) {
    for (const std::string& side : {pair.source, pair.target}) {
      const std::vector<int> ids = sp->encode(side);
      ASSERT_FALSE(ids.empty());
      for (int id : ids) {
        EXPECT_GE(id, kFirstPieceId) << side;  // no <unk>: every character was seen in training
        EXPECT_LT(id, sp->vocab_size());
      }
      std::vector<int> framed = {kBosId};
      framed.insert(framed.end(), ids.begin(), ids.end());
      framed.push_back(kEosId);
      EXPECT_EQ(sp->decode(framed), side);
    }
  }
}

TEST_F(SentencePieceTest, RoundTripThroughBytesAndDeterministic) {
  SentencePieceOptions options;
  options.vocab_size = 250;
  const auto first = train_sentencepiece(joint_sentences(task_->train), options);
  const auto second = train_sentencepiece(joint_sentences(task_->train), options);
  EXPECT_EQ(first->serialize(), second->serialize());
  const auto loaded = load_tokenizer(first->serialize());
  EXPECT_EQ(loaded->kind(), "sentencepiece");
  EXPECT_EQ(loaded->vocab_size(), first->vocab_size());
  for (const SentencePair& pair : task_->test) {
    EXPECT_EQ(loaded->encode(pair.source), first->encode(pair.source));
    EXPECT_EQ(loaded->decode(loaded->encode(pair.target)), pair.target);
  }
  EXPECT_EQ(loaded->serialize(), first->serialize());
}

TEST_F(SentencePieceTest, BadSettingsAreClearErrors) {
  SentencePieceOptions options;
  options.vocab_size = 4;
  EXPECT_EQ(error_of([&] { train_sentencepiece(joint_sentences(task_->train), options); }),
            "SentencePiece vocab_size must be larger than 4, got 4");
  EXPECT_EQ(error_of([] { train_sentencepiece({}, {}); }), "cannot train SentencePiece: no sentences");
}

TEST(Normalizer, LowercasesAndSplitsPunctuationLikeMulti30k) {
  EXPECT_EQ(normalize_for_word_vocab("A Man's Hat, (RED)!"), "a man &apos;s hat , ( red ) !");
  EXPECT_EQ(normalize_for_word_vocab("Zwei Männer ÜBER der Straße."), "zwei männer über der straße .");
  EXPECT_EQ(normalize_for_word_vocab("  rock & roll:\t\"live\"  "), "rock &amp; roll : &quot; live &quot;");
  EXPECT_EQ(normalize_for_word_vocab("A blond-haired boy?"), "a blond-haired boy ?");
  EXPECT_EQ(normalize_for_word_vocab("'quoted'"), "&apos; quoted &apos;");
  EXPECT_EQ(normalize_for_word_vocab(""), "");
}

// The module's search is tested in a child process: the module is loaded once per process, and
// ATTNLAB_SENTENCEPIECE_MODULE, when set, is the only place searched.
TEST(SentencePieceModule, ChildProcessReportsTheModuleProblem) {
  const char* expected = std::getenv("ATTNLAB_TEST_EXPECTED_MODULE_ERROR");
  if (!expected) GTEST_SKIP() << "runs only as the child of SentencePieceModule.MissingOrBrokenModuleIsNamed";
  EXPECT_EQ(error_of([] { train_sentencepiece({"a b c"}, {}); }).rfind(expected, 0), 0u)
      << error_of([] { train_sentencepiece({"a b c"}, {}); });
}

TEST(SentencePieceModule, MissingOrBrokenModuleIsNamed) {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const attnlab::test::TempDir dir;
  const std::string missing = (dir / "libattnlab_sentencepiece.so").string();
  const std::string child = " " + self + " --gtest_filter=SentencePieceModule.ChildProcessReportsTheModuleProblem";
  auto result = attnlab::test::run_command("ATTNLAB_SENTENCEPIECE_MODULE=" + missing +
                                           " ATTNLAB_TEST_EXPECTED_MODULE_ERROR='cannot find the SentencePiece module "
                                           "libattnlab_sentencepiece.so (searched: " + missing + ")'" + child);
  EXPECT_EQ(result.exit_code, 0) << result.out;
  const std::string not_a_library = attnlab::test::write_file(dir / "not_a_library.so", "text, not ELF");
  result = attnlab::test::run_command("ATTNLAB_SENTENCEPIECE_MODULE=" + not_a_library +
                                      " ATTNLAB_TEST_EXPECTED_MODULE_ERROR='cannot load the SentencePiece module " +
                                      not_a_library + ": '" + child);
  EXPECT_EQ(result.exit_code, 0) << result.out;
}

// SentencePiece's BPE trainer crashes (SIGSEGV) when asked for more pieces than a corpus can merge
// (60 Multi30k pairs: vocab_size 3074 and up). train_sentencepiece refuses every vocab_size above
// sentencepiece_vocab_floor, and training at the floor itself completes, on corpora of several sizes.
void expect_floor_trains_and_above_is_refused(const std::vector<std::string_view>& sentences, const std::string& what) {
  const int64_t floor = sentencepiece_vocab_floor(sentences);
  ASSERT_GT(floor, kFirstPieceId) << what;
  SentencePieceOptions options;
  options.vocab_size = floor;
  const auto sp = train_sentencepiece(sentences, options);
  EXPECT_LE(sp->vocab_size(), floor) << what;
  options.vocab_size = floor + 1;
  const std::string message = error_of([&] { train_sentencepiece(sentences, options); });
  EXPECT_EQ(message.rfind("SentencePiece vocab_size " + std::to_string(floor + 1) + " is more than this corpus is sure to give (" +
                              std::to_string(floor) + " pieces",
                          0),
            0u)
      << message;
  options.vocab_size = 100000000;
  EXPECT_NE(error_of([&] { train_sentencepiece(sentences, options); }).find("give vocab_size " + std::to_string(floor) + " or less"),
            std::string::npos);
}

TEST_F(SentencePieceTest, VocabularyBeyondWhatTheCorpusCanMergeIsRefusedNotCrashed) {
  const std::vector<std::string_view> all = joint_sentences(task_->train);
  for (size_t n : {size_t{2}, size_t{20}, size_t{200}}) {
    std::vector<std::string_view> some(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n));
    expect_floor_trains_and_above_is_refused(some, std::to_string(n) + " synthetic sentences");
  }
  const std::string multi30k = MULTI30K_DIR;
  std::vector<std::string> lines;
  for (const char* side : {"/train.lc.norm.tok.de", "/train.lc.norm.tok.en"}) {
    if (!std::filesystem::exists(multi30k + side)) GTEST_SKIP() << "no Multi30k in " << multi30k;
    std::vector<std::string> file = read_lines(multi30k + side);
    lines.insert(lines.end(), file.begin(), file.begin() + 60);
  }
  expect_floor_trains_and_above_is_refused(views(lines), "60 Multi30k pairs");
}
