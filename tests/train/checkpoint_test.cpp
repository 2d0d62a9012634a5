// Checkpoint files: round trip, every corruption error, parameters and optimizer state, averaging,
// rotation, and finding the checkpoint of a run directory.
#include "train/checkpoint.h"
#include "ir/protobuf_log.h"
#include "temp_dir.h"

#include <gtest/gtest.h>
#include <google/protobuf/util/message_differencer.h>
#include <zlib.h>

#include <sys/wait.h>
#include <unistd.h>

namespace attnlab::train {
namespace {
namespace fs = std::filesystem;
using testing::read_file;
using testing::TempDir;
using testing::write_file;

ckpt::Checkpoint full_checkpoint() {
  ckpt::Checkpoint c;
  c.set_spec_text("model tiny { param d_model = 4 }\n");
  c.add_overrides("--set d_model=4");
  c.add_overrides("--use attention=attention.additive");
  (*c.mutable_settings())["train.max_steps"] = "200";
  (*c.mutable_settings())["decode.beam"] = "4";
  c.set_tokenizer_kind("sentencepiece");
  c.set_tokenizer(std::string("\x00\x01binary\xff tokenizer", 19));
  Tensor w({2, 3}, {1, 2, 3, 4, 5, 6}), b({3}, {-1, 0, 1});
  set_tensor(*c.add_parameters(), "enc.w", w);
  set_tensor(*c.add_parameters(), "enc.b", b);
  ckpt::OptimizerState& opt = *c.mutable_optimizer();
  opt.set_kind("adam");
  opt.set_step(17);
  opt.set_beta1(0.9);
  opt.set_beta2(0.98);
  opt.set_eps(1e-9);
  c.set_step(17);
  c.set_epoch(2);
  c.mutable_data_position()->set_epoch(2);
  c.mutable_data_position()->set_batch_index(5);
  c.mutable_random()->set_seed(1234);
  (*c.mutable_random()->mutable_counters())["dropout"] = 99;
  c.mutable_metrics()->set_best_metric("valid_bleu");
  c.mutable_metrics()->set_best_score(12.5);
  c.mutable_metrics()->set_best_step(15);
  c.mutable_metrics()->set_has_best(true);
  (*c.mutable_metrics()->mutable_last())["valid_loss"] = 3.25;
  c.set_created_utc("2026-11-21T15:00:00Z");
  return c;
}

// The CheckpointError message of reading `file`, or "" when it loads.
std::string read_error(const fs::path& file) {
  try {
    read_checkpoint(file);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(CheckpointFile, RoundTripKeepsEveryField) {
  TempDir dir;
  const ckpt::Checkpoint c = full_checkpoint();
  write_checkpoint(dir / "a.ckpt", c);
  const ckpt::Checkpoint back = read_checkpoint(dir / "a.ckpt");
  EXPECT_EQ(back.format_version(), kCheckpointFormatVersion);
  ckpt::Checkpoint expected = c;
  expected.set_format_version(kCheckpointFormatVersion);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(expected, back));
  EXPECT_EQ(back.tokenizer().size(), 19u);
  EXPECT_EQ(back.settings().at("decode.beam"), "4");
  const Tensor w = to_tensor(back.parameters(0), "a.ckpt");
  EXPECT_EQ(w.shape(), (Shape{2, 3}));
  EXPECT_EQ(w.data()[5], 6.0f);
  // No temporary file is left after a successful write.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    ++files;
    EXPECT_EQ(e.path().filename(), "a.ckpt");
  }
  EXPECT_EQ(files, 1);
}

TEST(CheckpointFile, HeaderLayout) {
  const std::string bytes = encode_checkpoint(full_checkpoint());
  ASSERT_GT(bytes.size(), kCheckpointHeaderBytes);
  EXPECT_EQ(bytes.substr(0, 8), "ATTNCKPT");
  auto u32 = [&](size_t at) {
    uint32_t x = 0;
    for (int i = 0; i < 4; ++i) x |= uint32_t(uint8_t(bytes[at + i])) << (8 * i);
    return x;
  };
  EXPECT_EQ(u32(8), kCheckpointFormatVersion);
  const size_t payload = bytes.size() - kCheckpointHeaderBytes;
  EXPECT_EQ(u32(16), payload);
  EXPECT_EQ(u32(20), 0u);
  EXPECT_EQ(u32(12), crc32(0, reinterpret_cast<const Bytef*>(bytes.data() + kCheckpointHeaderBytes), uInt(payload)));
}

TEST(CheckpointFile, OverwriteReplacesTheContent) {
  TempDir dir;
  ckpt::Checkpoint c = full_checkpoint();
  write_checkpoint(dir / "a.ckpt", c);
  c.set_step(18);
  write_checkpoint(dir / "a.ckpt", c);
  EXPECT_EQ(read_checkpoint(dir / "a.ckpt").step(), 18);
}

TEST(CheckpointErrors, TruncatedAtSeveralPoints) {
  TempDir dir;
  const std::string bytes = encode_checkpoint(full_checkpoint());
  const size_t payload = bytes.size() - kCheckpointHeaderBytes;
  const fs::path f = dir / "cut.ckpt";

  write_file(f, "");
  EXPECT_EQ(read_error(f), "checkpoint " + f.string() + ": empty file (0 bytes)");

  write_file(f, bytes.substr(0, 5));  // part of the magic
  EXPECT_EQ(read_error(f), "checkpoint " + f.string() + ": truncated: 5 bytes, shorter than the 24-byte header");
  write_file(f, bytes.substr(0, 20));  // part of the header
  EXPECT_EQ(read_error(f), "checkpoint " + f.string() + ": truncated: 20 bytes, shorter than the 24-byte header");

  for (size_t keep : {size_t(0), size_t(1), payload / 2, payload - 1}) {
    write_file(f, bytes.substr(0, kCheckpointHeaderBytes + keep));
    EXPECT_EQ(read_error(f), "checkpoint " + f.string() + ": truncated: header says " + std::to_string(payload) +
                                 " bytes of payload, file has " + std::to_string(keep));
  }
}

TEST(CheckpointErrors, FlippedByteIsAChecksumMismatch) {
  TempDir dir;
  const std::string good = encode_checkpoint(full_checkpoint());
  const fs::path f = dir / "flip.ckpt";
  for (size_t at : {kCheckpointHeaderBytes, good.size() / 2, good.size() - 1}) {
    std::string bad = good;
    bad[at] = char(bad[at] ^ 0x10);
    write_file(f, bad);
    const std::string e = read_error(f);
    EXPECT_TRUE(contains(e, "checkpoint " + f.string() + ": checksum mismatch: header says CRC32 0x")) << e;
    EXPECT_TRUE(contains(e, "(the file is corrupt)")) << e;
  }
  // A flipped bit in the stored CRC itself is found the same way.
  std::string bad = good;
  bad[13] = char(bad[13] ^ 1);
  write_file(f, bad);
  EXPECT_TRUE(contains(read_error(f), "checksum mismatch")) << read_error(f);
}

TEST(CheckpointErrors, WrongMagicVersionAndTrailingBytes) {
  TempDir dir;
  const std::string good = encode_checkpoint(full_checkpoint());
  const fs::path f = dir / "x.ckpt";

  write_file(f, "PK\x03\x04 this is a zip file, not a checkpoint");
  EXPECT_EQ(read_error(f), "checkpoint " + f.string() + ": not an attnlab checkpoint (it does not start with \"ATTNCKPT\")");
  std::string bad = good;
  bad[3] = 'X';
  write_file(f, bad);
  EXPECT_TRUE(contains(read_error(f), "not an attnlab checkpoint"));
  write_file(f, "AT");  // a short prefix of the magic: a cut-off checkpoint
  EXPECT_EQ(read_error(f), "checkpoint " + f.string() + ": truncated: 2 bytes, shorter than the 24-byte header");
  write_file(f, "AX");  // short and not a prefix of the magic
  EXPECT_TRUE(contains(read_error(f), "not an attnlab checkpoint"));

  bad = good;
  bad[8] = 7;
  write_file(f, bad);
  EXPECT_EQ(read_error(f), "checkpoint " + f.string() + ": format version 7 is not supported (this build reads version 1)");

  write_file(f, good + "extra");
  EXPECT_TRUE(contains(read_error(f), "5 unexpected bytes at the end")) << read_error(f);

  EXPECT_EQ(read_error(dir / "missing.ckpt"), "checkpoint " + (dir / "missing.ckpt").string() + ": cannot open: No such file or directory");
  EXPECT_EQ(read_error(dir.path()), "checkpoint " + dir.path().string() + ": is a directory, not a checkpoint file");
}

TEST(CheckpointErrors, ValidChecksumButUnparsablePayload) {
  // A header that is right about a payload that is not a Checkpoint message.
  const std::string payload = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";
  std::string bytes = "ATTNCKPT";
  auto put = [&](uint64_t x, int n) {
    for (int i = 0; i < n; ++i) bytes += char((x >> (8 * i)) & 0xff);
  };
  put(kCheckpointFormatVersion, 4);
  put(crc32(0, reinterpret_cast<const Bytef*>(payload.data()), uInt(payload.size())), 4);
  put(payload.size(), 8);
  bytes += payload;
  try {
    decode_checkpoint(bytes, "mem");
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_EQ(std::string(e.what()), "checkpoint mem: payload is not a valid checkpoint message (written by an incompatible build?)");
  }
  TempDir dir;  // the same through the streaming reader
  write_file(dir / "g.ckpt", bytes);
  EXPECT_EQ(read_error(dir / "g.ckpt"), "checkpoint " + (dir / "g.ckpt").string() +
                                            ": payload is not a valid checkpoint message (written by an incompatible build?)");
}

TEST(CheckpointErrors, StringFieldThatIsNotUtf8IsNamedAndNothingElseIsPrinted) {
  // Protobuf gives its reason only to its log; the error carries it and stderr stays quiet.
  ckpt::Checkpoint c = full_checkpoint();
  c.mutable_parameters(0)->set_name("enc.\xff");
  std::string bytes;
  {
    const ir::ProtobufLogCapture quiet;  // serializing invalid UTF-8 logs a complaint too
    bytes = encode_checkpoint(c);
  }
  const std::string expected = ": payload is not a valid checkpoint message (String field 'attnlab.ckpt.TensorData.name' "
                               "contains invalid UTF-8 data when parsing a protocol buffer)";
  ::testing::internal::CaptureStderr();
  try {
    decode_checkpoint(bytes, "mem");
    ADD_FAILURE() << "accepted";
  } catch (const CheckpointError& e) {
    EXPECT_EQ(std::string(e.what()), "checkpoint mem" + expected);
  }
  TempDir dir;  // the same through the streaming reader
  write_file(dir / "u.ckpt", bytes);
  EXPECT_EQ(read_error(dir / "u.ckpt"), "checkpoint " + (dir / "u.ckpt").string() + expected);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

TEST(CheckpointFile, StreamedWriteEqualsInMemoryEncoding) {
  TempDir dir;
  ckpt::Checkpoint c = full_checkpoint();
  Tensor big({300000});
  for (int64_t i = 0; i < big.numel(); ++i) big.data()[i] = float(i % 1000) * 0.5f;
  set_tensor(*c.add_parameters(), "big", big);  // several of the writer's 1 MiB buffers
  write_checkpoint(dir / "s.ckpt", c);
  EXPECT_EQ(read_file(dir / "s.ckpt"), encode_checkpoint(c));
  const ckpt::Checkpoint back = read_checkpoint(dir / "s.ckpt");
  EXPECT_EQ(to_tensor(back.parameters(2), "s.ckpt").data()[299999], float(299999 % 1000) * 0.5f);
  c.set_format_version(kCheckpointFormatVersion);  // set explicitly: no appended version field
  write_checkpoint(dir / "t.ckpt", c);
  EXPECT_EQ(read_file(dir / "t.ckpt"), encode_checkpoint(c));
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(read_checkpoint(dir / "t.ckpt"), back));
}

TEST(CheckpointErrors, TensorDataThatDoesNotMatchItsShape) {
  ckpt::Checkpoint c = full_checkpoint();
  c.mutable_parameters(1)->add_data(5.0f);
  try {
    decode_checkpoint(encode_checkpoint(c), "m.ckpt");
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_EQ(std::string(e.what()), "checkpoint m.ckpt: parameter 'enc.b' has shape [3] (3 values) but 4 values are stored");
  }
}

// Dimensions whose product overflows 64 bits (found by fuzz_checkpoint: the product was formed
// unchecked, undefined behaviour) and a negative dimension are refused by name.
TEST(CheckpointErrors, ShapesWhoseSizeOverflowsOrIsNegative) {
  ckpt::Checkpoint c = full_checkpoint();
  auto* shape = c.mutable_parameters(1)->mutable_shape();
  shape->Clear();
  shape->Add(63300435968);
  shape->Add(1039923177);
  try {
    decode_checkpoint(encode_checkpoint(c), "m.ckpt");
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_EQ(std::string(e.what()),
              "checkpoint m.ckpt: parameter 'enc.b' has shape [63300435968, 1039923177], more values than a 64-bit count "
              "holds");
  }
  shape->Clear();
  shape->Add(-3);
  try {
    decode_checkpoint(encode_checkpoint(c), "m.ckpt");
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_EQ(std::string(e.what()), "checkpoint m.ckpt: parameter 'enc.b' has a negative dimension in shape [-3]");
  }
}

struct Param {
  std::string name;
  Tensor value;
  Tensor grad;
};

std::vector<ParamRef> refs(const std::vector<Param>& ps) {
  std::vector<ParamRef> out;
  for (const Param& p : ps) out.push_back({p.name, p.value.view(), p.grad.view()});
  return out;
}

TEST(CheckpointContents, ParametersAndOptimizerResumeExactly) {
  TempDir dir;
  std::vector<Param> model{{"a", Tensor({2, 2}, {1, 2, 3, 4}), Tensor({2, 2}, {0.1f, -0.2f, 0.3f, 0.4f})},
                           {"b", Tensor({3}, {5, 6, 7}), Tensor({3}, {1, 1, -1})}};
  Adam adam;
  auto p = refs(model);
  adam.step(p, 0.01);
  ckpt::Checkpoint c;
  store_parameters(c, p);
  store_optimizer(c, adam);
  c.set_step(1);
  write_checkpoint(dir / "s.ckpt", c);

  // The uninterrupted run takes a second step.
  adam.step(p, 0.01);

  // The resumed run loads parameters and optimizer state into a fresh model.
  std::vector<Param> fresh{{"b", Tensor({3}), Tensor({3}, {1, 1, -1})}, {"a", Tensor({2, 2}), Tensor({2, 2}, {0.1f, -0.2f, 0.3f, 0.4f})}};
  auto q = refs(fresh);
  const ckpt::Checkpoint loaded = read_checkpoint(dir / "s.ckpt");
  load_parameters(loaded, q, "s.ckpt");
  Adam resumed;
  resumed.import_state(adam_state_from(loaded, "s.ckpt"), q, "s.ckpt");
  EXPECT_EQ(loaded.optimizer().beta2(), 0.98);
  resumed.step(q, 0.01);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(fresh[1].value.data()[i], model[0].value.data()[i]);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(fresh[0].value.data()[i], model[1].value.data()[i]);
}

TEST(CheckpointContents, LoadParametersListsEveryDifferenceAndChangesNothing) {
  ckpt::Checkpoint c = full_checkpoint();  // enc.w [2,3], enc.b [3]
  std::vector<Param> model{{"enc.w", Tensor({3, 2}, 9.0f), Tensor({3, 2})}, {"dec.w", Tensor({2}, 9.0f), Tensor({2})}};
  try {
    load_parameters(c, refs(model), "run/best.ckpt");
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_EQ(std::string(e.what()),
              "checkpoint run/best.ckpt: parameters do not match the model:\n"
              "  missing from the checkpoint: 'dec.w'\n"
              "  in the checkpoint but not in the model: 'enc.b'\n"
              "  shape differs: 'enc.w' is [2, 3] in the checkpoint, [3, 2] in the model");
  }
  EXPECT_EQ(model[0].value.data()[0], 9.0f);
}

TEST(CheckpointContents, MissingOptimizerState) {
  ckpt::Checkpoint c;
  EXPECT_THROW(
      {
        try {
          adam_state_from(c, "f.ckpt");
        } catch (const CheckpointError& e) {
          EXPECT_EQ(std::string(e.what()), "checkpoint f.ckpt: holds no optimizer state");
          throw;
        }
      },
      CheckpointError);
}

ckpt::Checkpoint with_params(int64_t step, std::vector<std::pair<std::string, Tensor>> params) {
  ckpt::Checkpoint c;
  c.set_step(step);
  c.mutable_optimizer()->set_kind("adam");
  for (auto& [name, t] : params) set_tensor(*c.add_parameters(), name, t);
  return c;
}

TEST(CheckpointAveraging, ElementwiseMeanWithNewestMetadata) {
  TempDir dir;
  std::vector<fs::path> files;
  for (int k = 1; k <= 3; ++k) {
    ckpt::Checkpoint c = with_params(k * 100, {{"w", Tensor({2}, {float(k), float(-2 * k)})}, {"b", Tensor({1}, {float(k * k)})}});
    c.set_spec_text("spec " + std::to_string(k));
    files.push_back(dir / ("step-" + std::to_string(k) + ".ckpt"));
    write_checkpoint(files.back(), c);
  }
  const ckpt::Checkpoint avg = average_checkpoints(files);
  ASSERT_EQ(avg.parameters_size(), 2);
  const Tensor w = to_tensor(avg.parameters(0), "avg"), b = to_tensor(avg.parameters(1), "avg");
  EXPECT_EQ(avg.parameters(0).name(), "w");
  EXPECT_FLOAT_EQ(w.data()[0], 2.0f);
  EXPECT_FLOAT_EQ(w.data()[1], -4.0f);
  EXPECT_FLOAT_EQ(b.data()[0], 14.0f / 3.0f);
  EXPECT_EQ(avg.step(), 300);
  EXPECT_EQ(avg.spec_text(), "spec 3");
  EXPECT_FALSE(avg.has_optimizer());
  ASSERT_EQ(avg.averaged_from_size(), 3);
  EXPECT_EQ(avg.averaged_from(0), files[0].string());
  // The average is itself a checkpoint that can be written and read.
  write_checkpoint(dir / "avg.ckpt", avg);
  EXPECT_EQ(read_checkpoint(dir / "avg.ckpt").parameters_size(), 2);
}

TEST(CheckpointAveraging, ErrorsNameTheParameterAndFiles) {
  TempDir dir;
  const fs::path a = dir / "a.ckpt", b = dir / "b.ckpt", c = dir / "c.ckpt";
  write_checkpoint(a, with_params(1, {{"w", Tensor({2, 3})}, {"v", Tensor({1})}}));
  write_checkpoint(b, with_params(2, {{"w", Tensor({3, 2})}, {"v", Tensor({1})}}));
  write_checkpoint(c, with_params(3, {{"w", Tensor({2, 3})}, {"v", Tensor({1})}, {"extra", Tensor({1})}}));
  auto error = [](std::vector<fs::path> files) {
    try {
      average_checkpoints(files);
    } catch (const CheckpointError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error({a, b}), "checkpoint averaging: parameter 'w' has shape [2, 3] in " + a.string() + " but [3, 2] in " + b.string());
  EXPECT_EQ(error({a, c}), "checkpoint averaging: parameter 'extra' is in " + c.string() + " but not in " + a.string());
  EXPECT_EQ(error({c, a}), "checkpoint averaging: parameter 'extra' is in " + c.string() + " but not in " + a.string());
  EXPECT_EQ(error({}), "checkpoint averaging: no checkpoint files given");
  write_file(dir / "bad.ckpt", "garbage");
  EXPECT_TRUE(contains(error({a, dir / "bad.ckpt"}), "bad.ckpt: not an attnlab checkpoint"));
}

TEST(CheckpointDirectoryTest, KeepsTheLastKStepsPlusBest) {
  TempDir dir;
  CheckpointDirectory ckpts(dir / "checkpoints", 3);
  for (int64_t step = 100; step <= 700; step += 100) {
    ckpt::Checkpoint c = with_params(step, {{"w", Tensor({1}, {float(step)})}});
    const fs::path written = ckpts.save_step(c);
    EXPECT_EQ(written.filename().string(), "step-" + std::string(9 - std::to_string(step).size(), '0') + std::to_string(step) + ".ckpt");
    if (step == 300) ckpts.save_best(c);
  }
  const auto steps = ckpts.step_checkpoints();
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps[0].first, 500);
  EXPECT_EQ(steps[2].first, 700);
  EXPECT_EQ(read_checkpoint(ckpts.best_path()).step(), 300);
  EXPECT_EQ(read_checkpoint(*ckpts.latest()).step(), 700);
  const auto last2 = ckpts.last(2);
  ASSERT_EQ(last2.size(), 2u);
  EXPECT_EQ(read_checkpoint(last2[0]).step(), 600);
  EXPECT_EQ(ckpts.last(10).size(), 3u);
  const ckpt::Checkpoint avg = average_checkpoints(ckpts.last(3));
  EXPECT_FLOAT_EQ(to_tensor(avg.parameters(0), "avg").data()[0], 600.0f);
}

TEST(CheckpointDirectoryTest, IgnoresTemporariesAndOtherFiles) {
  TempDir dir;
  CheckpointDirectory ckpts(dir.path(), 2);
  ckpts.save_step(with_params(5, {}));
  // What a killed writer and other tools may leave behind.
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  const std::string stale = ".step-000000009.ckpt.tmp." + std::to_string(dead) + ".0";
  const std::string live = ".step-000000010.ckpt.tmp." + std::to_string(::getpid()) + ".3";
  for (const std::string& name : {stale, live, std::string("step-12.ckpt.tmp"), std::string("step-abc.ckpt"),
                                  std::string("step-.ckpt"), std::string("notes.txt")})
    write_file(dir / name, "partial");
  const auto steps = ckpts.step_checkpoints();
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].first, 5);
  EXPECT_EQ(ckpts.remove_stale_temporaries(), 1);  // the live process's temporary stays
  EXPECT_FALSE(fs::exists(dir / stale));
  EXPECT_TRUE(fs::exists(dir / live));
  EXPECT_EQ(find_checkpoint(dir.path()), dir / "step-000000005.ckpt");
}

TEST(FindCheckpoint, RunDirectoryFileOrError) {
  TempDir dir;
  CheckpointDirectory ckpts(dir / "checkpoints", 5);
  EXPECT_THROW(find_checkpoint(dir.path()), CheckpointError);
  try {
    find_checkpoint(dir.path());
  } catch (const CheckpointError& e) {
    EXPECT_TRUE(contains(e.what(), "no checkpoint in " + dir.path().string())) << e.what();
    EXPECT_TRUE(contains(e.what(), "checkpoints")) << e.what();
  }
  ckpts.save_step(with_params(10, {}));
  ckpts.save_step(with_params(20, {}));
  EXPECT_EQ(find_checkpoint(dir.path()), ckpts.step_path(20));
  ckpts.save_best(with_params(10, {}));
  EXPECT_EQ(find_checkpoint(dir.path()), ckpts.best_path());
  EXPECT_EQ(find_checkpoint(ckpts.step_path(10)), ckpts.step_path(10));
  try {
    find_checkpoint(dir / "nope");
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_EQ(std::string(e.what()), "checkpoint " + (dir / "nope").string() + ": no such file or directory");
  }
}

TEST(CheckpointFile, RefusesToWriteAnotherMessageVersion) {
  TempDir dir;
  ckpt::Checkpoint c = full_checkpoint();
  c.set_format_version(5);
  try {
    write_checkpoint(dir / "v.ckpt", c);
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot write " + (dir / "v.ckpt").string() +
                                         ": cannot encode a checkpoint with message format version 5 (this build writes version 1)");
  }
  EXPECT_FALSE(fs::exists(dir / "v.ckpt"));
}

TEST(AtomicWrite, FailureNamesTheFileAndLeavesNoTemporary) {
  TempDir dir;
  try {
    write_checkpoint(dir / "no_such_dir" / "a.ckpt", full_checkpoint());
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_TRUE(contains(e.what(), "cannot write " + (dir / "no_such_dir" / "a.ckpt").string())) << e.what();
    EXPECT_TRUE(contains(e.what(), "No such file or directory")) << e.what();
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

}  // namespace
}  // namespace attnlab::train
