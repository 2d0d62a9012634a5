// core/train/checkpoint.h — checkpoint files: format, atomic writing, checked reading, averaging,
// rotation.
//
// Contract:
// - The content is the protobuf message attnlab.ckpt.Checkpoint (core/proto/attnlab/ckpt/checkpoint.proto). On
//   disk it is wrapped in a 24-byte little-endian header:
//     bytes 0..7   magic "ATTNCKPT"
//     bytes 8..11  format version (kCheckpointFormatVersion)
//     bytes 12..15 CRC32 (zlib's, the IEEE polynomial) of the payload
//     bytes 16..23 payload length in bytes
//   followed by exactly `payload length` bytes of serialized message.
// - write_checkpoint() is atomic: it writes a temporary file in the target's directory
//   (".NAME.tmp.PID.N"), fsyncs it, renames it over the target and fsyncs the directory. A crash or
//   kill at any moment leaves either the previous file or the new one at the target path, never a
//   mix; at worst a temporary file is left behind, which no reader here mistakes for a checkpoint
//   (CheckpointDirectory::remove_stale_temporaries() deletes those of dead processes).
// - Writing and reading stream the payload (the CRC is computed on the way), so neither holds a
//   second, serialized copy of a large model in memory.
// - read_checkpoint() checks every part of the header and the payload; any problem is a
//   CheckpointError whose message starts with "checkpoint FILE: " and says what is wrong (empty
//   file, not an attnlab checkpoint, unsupported version, truncated with both lengths, trailing
//   bytes, checksum mismatch, unparsable payload, tensor data that does not match its shape).
// - Parameters are stored by name with shape and float data; load_parameters() requires the same
//   set of names and shapes as the model and lists every difference.
// - average_checkpoints() is the element-wise mean of the parameters of several checkpoints (the
//   paper averages the last 5 or 20); names and shapes must agree, and an error names the
//   parameter and both files. Everything else (spec, tokenizer, step, ...) is taken from the last
//   file; the optimizer state is dropped (it does not belong to the averaged weights), and
//   `averaged_from` lists the files.
// - CheckpointDirectory keeps "step-NNNNNNNNN.ckpt" files, pruning all but the newest `keep_last`
//   after each save, plus "best.ckpt", which pruning never touches.
#pragma once

#include "attnlab/ckpt/checkpoint.pb.h"
#include "train/optimizer.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab::train {

inline constexpr uint32_t kCheckpointFormatVersion = 1;
inline constexpr std::string_view kCheckpointMagic = "ATTNCKPT";
inline constexpr size_t kCheckpointHeaderBytes = 24;

struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- Files -------------------------------------------------------------------------------------

// Writes atomically (see above). A message whose format_version is 0 (unset) is written with the
// current version; any other version than the current one is an error.
void write_checkpoint(const std::filesystem::path& file, const ckpt::Checkpoint& checkpoint);
ckpt::Checkpoint read_checkpoint(const std::filesystem::path& file);

// The header and payload as bytes (format_version supplied as for write_checkpoint), and back;
// `source` names the bytes in messages.
std::string encode_checkpoint(const ckpt::Checkpoint& checkpoint);
ckpt::Checkpoint decode_checkpoint(std::string_view bytes, const std::string& source);

// Temporary file, write, fsync, rename over `file`, fsync the directory.
void write_file_atomically(const std::filesystem::path& file, std::string_view bytes);

// ---- Contents ----------------------------------------------------------------------------------

void set_tensor(ckpt::TensorData& out, const std::string& name, const TensorView& value);
// A stored tensor as a Tensor; CheckpointError when the data length does not match the shape.
Tensor to_tensor(const ckpt::TensorData& data, const std::string& source);

// Replaces the checkpoint's parameters with the values of `params` (in their order).
void store_parameters(ckpt::Checkpoint& checkpoint, std::span<const ParamRef> params);
// Copies stored values into `params[i].value`. The names must be the same set and the shapes equal;
// otherwise CheckpointError lists the missing, unexpected and mismatched parameters. No value is
// changed when there is an error.
void load_parameters(const ckpt::Checkpoint& checkpoint, std::span<const ParamRef> params, const std::string& source);

void store_optimizer(ckpt::Checkpoint& checkpoint, const Adam& adam);
AdamState adam_state_from(const ckpt::Checkpoint& checkpoint, const std::string& source);

// ---- Averaging ---------------------------------------------------------------------------------

ckpt::Checkpoint average_checkpoints(const std::vector<std::filesystem::path>& files);

// ---- Rotation ----------------------------------------------------------------------------------

class CheckpointDirectory {
 public:
  // Creates `dir` if needed. keep_last ≥ 1.
  explicit CheckpointDirectory(std::filesystem::path dir, int keep_last = 5);

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path step_path(int64_t step) const;  // dir/step-000001234.ckpt
  std::filesystem::path best_path() const;               // dir/best.ckpt

  // Writes the checkpoint as step_path(checkpoint.step()), then deletes the oldest step
  // checkpoints beyond keep_last. Returns the path written.
  std::filesystem::path save_step(const ckpt::Checkpoint& checkpoint);
  std::filesystem::path save_best(const ckpt::Checkpoint& checkpoint);

  // Step checkpoints present, oldest first (only names of the exact form step-DIGITS.ckpt).
  std::vector<std::pair<int64_t, std::filesystem::path>> step_checkpoints() const;
  std::optional<std::filesystem::path> latest() const;
  std::vector<std::filesystem::path> last(int k) const;  // up to k newest, oldest first

  // Deletes temporary files left by writers that are no longer running; returns how many.
  int remove_stale_temporaries() const;

 private:
  std::filesystem::path dir_;
  int keep_last_;
};

// The checkpoint a user means by PATH: a checkpoint file itself; or, for a directory, its
// best.ckpt, else its newest step checkpoint, looking in PATH and PATH/checkpoints. Throws
// CheckpointError saying where it looked.
std::filesystem::path find_checkpoint(const std::filesystem::path& run_dir_or_file);

}  // namespace attnlab::train
