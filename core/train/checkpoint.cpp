#include "train/checkpoint.h"

#include "ir/protobuf_log.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <zlib.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <map>
#include <set>
#include <sstream>

namespace attnlab::train {
namespace fs = std::filesystem;
namespace {

std::string prefix(const std::string& source) { return "checkpoint " + source + ": "; }

std::string hex32(uint32_t x) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", x);
  return buf;
}

void put_u32(char* p, uint32_t x) {
  for (int i = 0; i < 4; ++i) p[i] = char((x >> (8 * i)) & 0xff);
}
void put_u64(char* p, uint64_t x) {
  for (int i = 0; i < 8; ++i) p[i] = char((x >> (8 * i)) & 0xff);
}
uint32_t get_u32(const char* p) {
  uint32_t x = 0;
  for (int i = 0; i < 4; ++i) x |= uint32_t(uint8_t(p[i])) << (8 * i);
  return x;
}
uint64_t get_u64(const char* p) {
  uint64_t x = 0;
  for (int i = 0; i < 8; ++i) x |= uint64_t(uint8_t(p[i])) << (8 * i);
  return x;
}

uint32_t crc_update(uint32_t crc, const void* data, size_t n) {
  return uint32_t(crc32_z(crc, static_cast<const Bytef*>(data), n));
}
uint32_t crc_of(const char* data, size_t n) { return crc_update(uint32_t(crc32_z(0L, Z_NULL, 0)), data, n); }

std::string errno_text(int err) { return std::strerror(err); }

// Writes everything or returns the errno of the failure (0 on success).
int write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno;
    p += w;
    n -= size_t(w);
  }
  return 0;
}

// Reads up to n bytes; returns the count (short only at end of file); throws on a read error.
size_t read_up_to(int fd, void* data, size_t n, const std::string& source) {
  char* p = static_cast<char*>(data);
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::read(fd, p + done, n - done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw CheckpointError(prefix(source) + "read error: " + errno_text(errno));
    if (r == 0) break;
    done += size_t(r);
  }
  return done;
}

// The payload's bytes pass through here on the way to the file, so that the CRC is computed
// without holding the serialized message in memory.
class CrcFileOutput final : public google::protobuf::io::CopyingOutputStream {
 public:
  explicit CrcFileOutput(int fd) : fd_(fd) {}
  bool Write(const void* buffer, int size) override {
    crc_ = crc_update(crc_, buffer, size_t(size));
    bytes_ += uint64_t(size);
    error_ = write_all(fd_, buffer, size_t(size));
    return error_ == 0;
  }
  uint32_t crc() const { return crc_; }
  uint64_t bytes() const { return bytes_; }
  int error() const { return error_; }

 private:
  int fd_;
  uint32_t crc_ = uint32_t(crc32_z(0L, Z_NULL, 0));
  uint64_t bytes_ = 0;
  int error_ = 0;
};

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

struct Header {
  uint32_t crc = 0;
  uint64_t payload = 0;
};

// Checks the header given the first bytes of the file (up to kCheckpointHeaderBytes) and the file's
// total size; every error message starts with "checkpoint SOURCE: ".
Header check_header(std::string_view head, uint64_t file_size, const std::string& source) {
  const std::string p = prefix(source);
  if (file_size == 0) throw CheckpointError(p + "empty file (0 bytes)");
  const size_t magic_seen = std::min(head.size(), kCheckpointMagic.size());
  if (head.substr(0, magic_seen) != kCheckpointMagic.substr(0, magic_seen))
    throw CheckpointError(p + "not an attnlab checkpoint (it does not start with \"ATTNCKPT\")");
  if (file_size < kCheckpointHeaderBytes)
    throw CheckpointError(p + "truncated: " + std::to_string(file_size) + " bytes, shorter than the " +
                          std::to_string(kCheckpointHeaderBytes) + "-byte header");
  const uint32_t version = get_u32(head.data() + 8);
  if (version != kCheckpointFormatVersion)
    throw CheckpointError(p + "format version " + std::to_string(version) + " is not supported (this build reads version " +
                          std::to_string(kCheckpointFormatVersion) + ")");
  Header h;
  h.crc = get_u32(head.data() + 12);
  h.payload = get_u64(head.data() + 16);
  const uint64_t available = file_size - kCheckpointHeaderBytes;
  if (available < h.payload)
    throw CheckpointError(p + "truncated: header says " + std::to_string(h.payload) + " bytes of payload, file has " +
                          std::to_string(available));
  if (available > h.payload)
    throw CheckpointError(p + "corrupt: header says " + std::to_string(h.payload) + " bytes of payload, file has " +
                          std::to_string(available) + " (" + std::to_string(available - h.payload) + " unexpected bytes at the end)");
  if (h.payload > uint64_t(INT_MAX))
    throw CheckpointError(p + "payload of " + std::to_string(h.payload) + " bytes is larger than a protobuf message can be");
  return h;
}

void check_crc(uint32_t stored, uint32_t actual, const std::string& source) {
  if (actual != stored)
    throw CheckpointError(prefix(source) + "checksum mismatch: header says CRC32 " + hex32(stored) + ", payload has " +
                          hex32(actual) + " (the file is corrupt)");
}

// Parameters by name, rejecting a name stored twice.
std::map<std::string, const ckpt::TensorData*> index_parameters(const ckpt::Checkpoint& c, const std::string& source) {
  std::map<std::string, const ckpt::TensorData*> by_name;
  for (const ckpt::TensorData& t : c.parameters()) {
    if (!by_name.emplace(t.name(), &t).second)
      throw CheckpointError(prefix(source) + "parameter '" + t.name() + "' is stored twice");
  }
  return by_name;
}

Shape shape_of(const google::protobuf::RepeatedField<int64_t>& dims) { return Shape(dims.begin(), dims.end()); }

void check_data_length(const std::string& what, const Shape& shape, int64_t count, const std::string& source) {
  // The stored dimensions are untrusted: their product is formed with an overflow check.
  int64_t values = 1;
  for (int64_t d : shape) {
    if (d < 0) throw CheckpointError(prefix(source) + what + " has a negative dimension in shape " + to_string(shape));
    if (__builtin_mul_overflow(values, d, &values))
      throw CheckpointError(prefix(source) + what + " has shape " + to_string(shape) +
                            ", more values than a 64-bit count holds");
  }
  if (values != count)
    throw CheckpointError(prefix(source) + what + " has shape " + to_string(shape) + " (" + std::to_string(values) +
                          " values) but " + std::to_string(count) + " values are stored");
}

// A weight that is NaN or infinite: the model would compute nothing but NaN (and translate to
// empty lines), so such a checkpoint is refused when read, naming the first bad value.
void check_finite(const std::string& what, const google::protobuf::RepeatedField<float>& data, const std::string& source) {
  for (int i = 0; i < data.size(); ++i)
    if (!std::isfinite(data[i]))
      throw CheckpointError(prefix(source) + what + " holds a non-finite value (" + (std::isnan(data[i]) ? "nan" : data[i] > 0 ? "inf" : "-inf") +
                            " at index " + std::to_string(i) + "); the checkpoint was saved from a diverged or damaged model");
}

// Checks on the parsed message: its version, every tensor's data against its shape, and every
// parameter finite.
void check_message(const ckpt::Checkpoint& checkpoint, const std::string& source) {
  if (checkpoint.format_version() != kCheckpointFormatVersion)
    throw CheckpointError(prefix(source) + "message format version " + std::to_string(checkpoint.format_version()) +
                          " is not supported (this build reads version " + std::to_string(kCheckpointFormatVersion) + ")");
  for (const ckpt::TensorData& t : checkpoint.parameters()) {
    check_data_length("parameter '" + t.name() + "'", shape_of(t.shape()), t.data_size(), source);
    check_finite("parameter '" + t.name() + "'", t.data(), source);
  }
  for (const ckpt::AdamSlot& s : checkpoint.optimizer().slots()) {
    check_data_length("optimizer first moment of '" + s.name() + "'", shape_of(s.shape()), s.m_size(), source);
    check_data_length("optimizer second moment of '" + s.name() + "'", shape_of(s.shape()), s.v_size(), source);
  }
}

// A payload protobuf refused, with protobuf's reason when it gave one (it gives it only to its log).
CheckpointError unparsable(const std::string& source, const ir::ProtobufLogCapture& log) {
  const std::string reason = log.reason();
  return CheckpointError(prefix(source) + "payload is not a valid checkpoint message (" +
                         (reason.empty() ? "written by an incompatible build?" : reason) + ")");
}

// The bytes that supply an unset format_version: field 1 (varint) appended after the message.
// Protobuf keeps the last value of a scalar field, and this avoids copying a large message.
std::string version_suffix(const ckpt::Checkpoint& checkpoint) {
  const uint32_t version = checkpoint.format_version();
  if (version != 0 && version != kCheckpointFormatVersion)
    throw CheckpointError("cannot encode a checkpoint with message format version " + std::to_string(version) +
                          " (this build writes version " + std::to_string(kCheckpointFormatVersion) + ")");
  static_assert(kCheckpointFormatVersion < 128, "the appended version must fit in one varint byte");
  return version == 0 ? std::string{char(0x08), char(kCheckpointFormatVersion)} : std::string();
}

size_t checked_payload_size(const ckpt::Checkpoint& checkpoint, size_t suffix) {
  const size_t payload = checkpoint.ByteSizeLong() + suffix;
  if (payload > size_t(INT_MAX))
    throw CheckpointError("checkpoint of " + std::to_string(payload) + " bytes is larger than the 2 GiB a protobuf message can hold");
  return payload;
}

std::string make_header(uint32_t crc, uint64_t payload) {
  std::string header(kCheckpointHeaderBytes, '\0');
  std::memcpy(header.data(), kCheckpointMagic.data(), kCheckpointMagic.size());
  put_u32(header.data() + 8, kCheckpointFormatVersion);
  put_u32(header.data() + 12, crc);
  put_u64(header.data() + 16, payload);
  return header;
}

// Creates a temporary file next to `file`, lets `fill` write it, fsyncs it, renames it over `file`
// and fsyncs the directory. `fill` returns 0 or an errno and may throw; the temporary is removed
// on any failure.
template <class Fill>
void write_atomically_with(const fs::path& file, Fill&& fill) {
  static std::atomic<uint64_t> counter{0};
  const fs::path dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
  const fs::path temp = dir / ("." + file.filename().string() + ".tmp." + std::to_string(::getpid()) + "." +
                               std::to_string(counter.fetch_add(1)));
  auto fail = [&](const std::string& what, int err, bool remove_temp) {
    if (remove_temp) ::unlink(temp.c_str());
    throw CheckpointError("cannot write " + file.string() + ": " + what + ": " + errno_text(err));
  };

  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create temporary file " + temp.string(), errno, false);
  int err = 0;
  try {
    err = fill(fd);
  } catch (...) {
    ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  if (err != 0) {
    ::close(fd);
    fail("write to " + temp.string(), err, true);
  }
  // The data must be on disk before the rename makes it visible under the target name.
  if (::fsync(fd) != 0) {
    err = errno;
    ::close(fd);
    fail("fsync of " + temp.string(), err, true);
  }
  if (::close(fd) != 0) fail("close of " + temp.string(), errno, true);
  if (::rename(temp.c_str(), file.c_str()) != 0) fail("rename of " + temp.string(), errno, true);
  // The rename itself is durable only once the directory entry is.
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) fail("cannot open directory " + dir.string() + " to fsync it", errno, false);
  if (::fsync(dir_fd) != 0 && errno != EINVAL) {  // EINVAL: the file system cannot sync directories
    err = errno;
    ::close(dir_fd);
    fail("fsync of directory " + dir.string(), err, false);
  }
  ::close(dir_fd);
}

}  // namespace

// ---- Files -------------------------------------------------------------------------------------

std::string encode_checkpoint(const ckpt::Checkpoint& checkpoint) {
  const std::string suffix = version_suffix(checkpoint);
  const size_t payload = checked_payload_size(checkpoint, suffix.size());
  std::string bytes(kCheckpointHeaderBytes + payload, '\0');
  auto* out = reinterpret_cast<uint8_t*>(bytes.data() + kCheckpointHeaderBytes);
  checkpoint.SerializeWithCachedSizesToArray(out);
  std::memcpy(out + payload - suffix.size(), suffix.data(), suffix.size());
  const std::string header = make_header(crc_of(bytes.data() + kCheckpointHeaderBytes, payload), payload);
  std::memcpy(bytes.data(), header.data(), header.size());
  return bytes;
}

ckpt::Checkpoint decode_checkpoint(std::string_view bytes, const std::string& source) {
  const Header h = check_header(bytes.substr(0, kCheckpointHeaderBytes), bytes.size(), source);
  const char* payload = bytes.data() + kCheckpointHeaderBytes;
  check_crc(h.crc, crc_of(payload, h.payload), source);
  ckpt::Checkpoint checkpoint;
  const ir::ProtobufLogCapture log;
  if (!checkpoint.ParseFromArray(payload, int(h.payload))) throw unparsable(source, log);
  check_message(checkpoint, source);
  return checkpoint;
}

void write_file_atomically(const fs::path& file, std::string_view bytes) {
  write_atomically_with(file, [&](int fd) { return write_all(fd, bytes.data(), bytes.size()); });
}

void write_checkpoint(const fs::path& file, const ckpt::Checkpoint& checkpoint) {
  std::string suffix;
  size_t expected = 0;
  try {
    suffix = version_suffix(checkpoint);
    expected = checked_payload_size(checkpoint, suffix.size());
  } catch (const CheckpointError& e) {
    throw CheckpointError("cannot write " + file.string() + ": " + e.what());
  }
  // Streamed: header placeholder, payload through the CRC, then the real header. Memory use stays
  // at the message itself, however large.
  write_atomically_with(file, [&](int fd) -> int {
    const std::string placeholder(kCheckpointHeaderBytes, '\0');
    if (int err = write_all(fd, placeholder.data(), placeholder.size())) return err;
    CrcFileOutput output(fd);
    {
      google::protobuf::io::CopyingOutputStreamAdaptor adaptor(&output, 1 << 20);
      google::protobuf::io::CodedOutputStream coded(&adaptor);
      checkpoint.SerializeWithCachedSizes(&coded);
      coded.WriteRaw(suffix.data(), int(suffix.size()));
      coded.Trim();
      if (coded.HadError()) return output.error() ? output.error() : EIO;
      if (!adaptor.Flush()) return output.error() ? output.error() : EIO;
    }
    if (output.bytes() != expected)
      throw CheckpointError("cannot write " + file.string() + ": serialized " + std::to_string(output.bytes()) +
                            " bytes, expected " + std::to_string(expected) + " (was the message changed while writing?)");
    const std::string header = make_header(output.crc(), output.bytes());
    size_t done = 0;
    while (done < header.size()) {
      const ssize_t w = ::pwrite(fd, header.data() + done, header.size() - done, off_t(done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return errno;
      done += size_t(w);
    }
    return 0;
  });
}

ckpt::Checkpoint read_checkpoint(const fs::path& file) {
  const std::string source = file.string();
  FileDescriptor fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw CheckpointError(prefix(source) + "cannot open: " + errno_text(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw CheckpointError(prefix(source) + "cannot stat: " + errno_text(errno));
  if (S_ISDIR(st.st_mode)) throw CheckpointError(prefix(source) + "is a directory, not a checkpoint file");
  std::string head(kCheckpointHeaderBytes, '\0');
  head.resize(read_up_to(fd.get(), head.data(), head.size(), source));
  const Header h = check_header(head, uint64_t(st.st_size), source);

  // First pass: the checksum, in chunks, before anything is parsed.
  std::vector<char> chunk(size_t(1) << 20);
  uint32_t crc = uint32_t(crc32_z(0L, Z_NULL, 0));
  uint64_t left = h.payload;
  while (left > 0) {
    const size_t want = size_t(std::min<uint64_t>(left, chunk.size()));
    const size_t got = read_up_to(fd.get(), chunk.data(), want, source);
    if (got == 0)
      throw CheckpointError(prefix(source) + "truncated: header says " + std::to_string(h.payload) + " bytes of payload, file has " +
                            std::to_string(h.payload - left) + " (it shrank while being read)");
    crc = crc_update(crc, chunk.data(), got);
    left -= got;
  }
  check_crc(h.crc, crc, source);

  // Second pass: parse exactly the payload, streamed from the file.
  if (::lseek(fd.get(), off_t(kCheckpointHeaderBytes), SEEK_SET) < 0)
    throw CheckpointError(prefix(source) + "cannot seek: " + errno_text(errno));
  google::protobuf::io::FileInputStream input(fd.get(), 1 << 20);
  ckpt::Checkpoint checkpoint;
  const ir::ProtobufLogCapture log;
  if (!checkpoint.ParseFromBoundedZeroCopyStream(&input, int(h.payload))) throw unparsable(source, log);
  check_message(checkpoint, source);
  return checkpoint;
}

// ---- Contents ----------------------------------------------------------------------------------

void set_tensor(ckpt::TensorData& out, const std::string& name, const TensorView& value) {
  out.set_name(name);
  out.clear_shape();
  for (int64_t d : value.shape()) out.add_shape(d);
  out.mutable_data()->Resize(int(value.numel()), 0.0f);
  if (value.numel()) std::memcpy(out.mutable_data()->mutable_data(), value.data(), sizeof(float) * value.numel());
}

Tensor to_tensor(const ckpt::TensorData& data, const std::string& source) {
  const Shape shape = shape_of(data.shape());
  check_data_length("tensor '" + data.name() + "'", shape, data.data_size(), source);
  Tensor t(shape);
  if (t.numel()) std::memcpy(t.data(), data.data().data(), sizeof(float) * t.numel());
  return t;
}

void store_parameters(ckpt::Checkpoint& checkpoint, std::span<const ParamRef> params) {
  checkpoint.clear_parameters();
  for (const ParamRef& p : params) set_tensor(*checkpoint.add_parameters(), p.name, p.value);
}

void load_parameters(const ckpt::Checkpoint& checkpoint, std::span<const ParamRef> params, const std::string& source) {
  const auto stored = index_parameters(checkpoint, source);
  std::vector<std::string> missing, mismatched;
  std::set<std::string> wanted;
  for (const ParamRef& p : params) {
    wanted.insert(p.name);
    auto it = stored.find(p.name);
    if (it == stored.end()) {
      missing.push_back(p.name);
      continue;
    }
    const Shape shape = shape_of(it->second->shape());
    if (shape != p.value.shape())
      mismatched.push_back("'" + p.name + "' is " + to_string(shape) + " in the checkpoint, " + to_string(p.value.shape()) +
                           " in the model");
    else
      check_data_length("parameter '" + p.name + "'", shape, it->second->data_size(), source);
  }
  std::vector<std::string> unexpected;
  for (const auto& [name, t] : stored)
    if (!wanted.count(name)) unexpected.push_back(name);
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::ostringstream msg;
    msg << prefix(source) << "parameters do not match the model:";
    auto list = [&](const char* what, const std::vector<std::string>& names, bool quote) {
      if (names.empty()) return;
      msg << "\n  " << what << ":";
      for (const std::string& n : names) msg << (quote ? " '" : " ") << n << (quote ? "'" : "");
    };
    list("missing from the checkpoint", missing, true);
    list("in the checkpoint but not in the model", unexpected, true);
    list("shape differs", mismatched, false);
    throw CheckpointError(msg.str());
  }
  for (const ParamRef& p : params) {
    const ckpt::TensorData& t = *stored.at(p.name);
    if (p.value.numel()) std::memcpy(p.value.data(), t.data().data(), sizeof(float) * p.value.numel());
  }
}

void store_optimizer(ckpt::Checkpoint& checkpoint, const Adam& adam) {
  ckpt::OptimizerState& out = *checkpoint.mutable_optimizer();
  out.Clear();
  out.set_kind("adam");
  const AdamState state = adam.export_state();
  out.set_step(state.step);
  out.set_beta1(adam.config().beta1);
  out.set_beta2(adam.config().beta2);
  out.set_eps(adam.config().eps);
  out.set_clip_norm(adam.config().clip_norm);
  for (const AdamState::Slot& s : state.slots) {
    ckpt::AdamSlot& slot = *out.add_slots();
    slot.set_name(s.name);
    for (int64_t d : s.m.shape()) slot.add_shape(d);
    slot.mutable_m()->Add(s.m.data(), s.m.data() + s.m.numel());
    slot.mutable_v()->Add(s.v.data(), s.v.data() + s.v.numel());
  }
}

AdamState adam_state_from(const ckpt::Checkpoint& checkpoint, const std::string& source) {
  const ckpt::OptimizerState& in = checkpoint.optimizer();
  if (in.kind() != "adam")
    throw CheckpointError(prefix(source) + (in.kind().empty() ? std::string("holds no optimizer state")
                                                              : "optimizer state is '" + in.kind() + "', not 'adam'"));
  AdamState state;
  state.step = in.step();
  for (const ckpt::AdamSlot& s : in.slots()) {
    const Shape shape = shape_of(s.shape());
    check_data_length("optimizer first moment of '" + s.name() + "'", shape, s.m_size(), source);
    check_data_length("optimizer second moment of '" + s.name() + "'", shape, s.v_size(), source);
    AdamState::Slot slot{s.name(), Tensor(shape), Tensor(shape)};
    std::copy(s.m().begin(), s.m().end(), slot.m.data());
    std::copy(s.v().begin(), s.v().end(), slot.v.data());
    state.slots.push_back(std::move(slot));
  }
  return state;
}

// ---- Averaging ---------------------------------------------------------------------------------

ckpt::Checkpoint average_checkpoints(const std::vector<fs::path>& files) {
  if (files.empty()) throw CheckpointError("checkpoint averaging: no checkpoint files given");
  // Running sums in double, one file in memory at a time besides them.
  const std::string first_name = files.front().string();
  ckpt::Checkpoint result = read_checkpoint(files.front());
  index_parameters(result, first_name);  // rejects duplicate names
  std::vector<std::vector<double>> sums;
  for (const ckpt::TensorData& t : result.parameters()) sums.emplace_back(t.data().begin(), t.data().end());

  for (size_t f = 1; f < files.size(); ++f) {
    const std::string name = files[f].string();
    ckpt::Checkpoint next = read_checkpoint(files[f]);
    const auto by_name = index_parameters(next, name);
    std::set<std::string> seen;
    for (int i = 0; i < result.parameters_size(); ++i) {
      const ckpt::TensorData& base = result.parameters(i);
      auto it = by_name.find(base.name());
      if (it == by_name.end())
        throw CheckpointError("checkpoint averaging: parameter '" + base.name() + "' is in " + first_name + " but not in " + name);
      const Shape a = shape_of(base.shape()), b = shape_of(it->second->shape());
      if (a != b)
        throw CheckpointError("checkpoint averaging: parameter '" + base.name() + "' has shape " + to_string(a) + " in " +
                              first_name + " but " + to_string(b) + " in " + name);
      const auto& data = it->second->data();
      for (int j = 0; j < data.size(); ++j) sums[i][j] += data[j];
      seen.insert(base.name());
    }
    for (const auto& [pname, t] : by_name)
      if (!seen.count(pname))
        throw CheckpointError("checkpoint averaging: parameter '" + pname + "' is in " + name + " but not in " + first_name);
    if (f + 1 == files.size()) {
      // Everything but the parameters comes from the newest checkpoint.
      next.clear_parameters();
      next.mutable_parameters()->Swap(result.mutable_parameters());
      result = std::move(next);
    }
  }
  const double count = double(files.size());
  for (int i = 0; i < result.parameters_size(); ++i) {
    auto& data = *result.mutable_parameters(i)->mutable_data();
    for (int j = 0; j < data.size(); ++j) data[j] = float(sums[i][j] / count);
  }
  result.clear_optimizer();
  result.clear_averaged_from();
  for (const fs::path& f : files) result.add_averaged_from(f.string());
  return result;
}

// ---- Rotation ----------------------------------------------------------------------------------

namespace {

std::optional<int64_t> step_of_name(const std::string& name) {
  // Exactly "step-" DIGITS ".ckpt".
  constexpr std::string_view head = "step-", tail = ".ckpt";
  if (name.size() <= head.size() + tail.size() || name.compare(0, head.size(), head) != 0 ||
      name.compare(name.size() - tail.size(), tail.size(), tail) != 0)
    return std::nullopt;
  const std::string digits = name.substr(head.size(), name.size() - head.size() - tail.size());
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stoll(digits);
}

}  // namespace

CheckpointDirectory::CheckpointDirectory(fs::path dir, int keep_last) : dir_(std::move(dir)), keep_last_(keep_last) {
  if (keep_last < 1) throw CheckpointError("checkpoint rotation: keep_last must be >= 1, got " + std::to_string(keep_last));
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw CheckpointError("cannot create checkpoint directory " + dir_.string() + ": " + ec.message());
}

fs::path CheckpointDirectory::step_path(int64_t step) const {
  if (step < 0) throw CheckpointError("checkpoint rotation: negative step " + std::to_string(step));
  char name[40];
  std::snprintf(name, sizeof name, "step-%09lld.ckpt", static_cast<long long>(step));
  return dir_ / name;
}

fs::path CheckpointDirectory::best_path() const { return dir_ / "best.ckpt"; }

fs::path CheckpointDirectory::save_step(const ckpt::Checkpoint& checkpoint) {
  const fs::path path = step_path(checkpoint.step());
  write_checkpoint(path, checkpoint);
  auto steps = step_checkpoints();
  const size_t keep = size_t(keep_last_);
  for (size_t i = 0; i + keep < steps.size(); ++i) {
    std::error_code ec;
    fs::remove(steps[i].second, ec);  // a file that cannot be removed only costs disk space
  }
  return path;
}

fs::path CheckpointDirectory::save_best(const ckpt::Checkpoint& checkpoint) {
  write_checkpoint(best_path(), checkpoint);
  return best_path();
}

std::vector<std::pair<int64_t, fs::path>> CheckpointDirectory::step_checkpoints() const {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    if (!entry.is_regular_file()) continue;
    if (auto step = step_of_name(entry.path().filename().string())) out.emplace_back(*step, entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<fs::path> CheckpointDirectory::latest() const {
  auto steps = step_checkpoints();
  if (steps.empty()) return std::nullopt;
  return steps.back().second;
}

std::vector<fs::path> CheckpointDirectory::last(int k) const {
  auto steps = step_checkpoints();
  std::vector<fs::path> out;
  const size_t start = steps.size() > size_t(std::max(k, 0)) ? steps.size() - size_t(std::max(k, 0)) : 0;
  for (size_t i = start; i < steps.size(); ++i) out.push_back(steps[i].second);
  return out;
}

int CheckpointDirectory::remove_stale_temporaries() const {
  int removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    // ".NAME.tmp.PID.N"
    if (name.empty() || name[0] != '.') continue;
    const size_t tmp = name.rfind(".tmp.");
    if (tmp == std::string::npos) continue;
    const size_t dot = name.find('.', tmp + 5);
    if (dot == std::string::npos) continue;
    const std::string pid_text = name.substr(tmp + 5, dot - tmp - 5);
    if (pid_text.empty() || !std::all_of(pid_text.begin(), pid_text.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    const pid_t pid = pid_t(std::stol(pid_text));
    const bool alive = ::kill(pid, 0) == 0 || errno == EPERM;
    if (alive && pid != 0) continue;
    if (fs::remove(entry.path(), ec)) ++removed;
  }
  return removed;
}

fs::path find_checkpoint(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw CheckpointError("checkpoint " + path.string() + ": no such file or directory");
  if (!fs::is_directory(path, ec)) return path;
  std::vector<fs::path> looked;
  for (const fs::path& dir : {path / "checkpoints", path}) {
    if (!fs::is_directory(dir, ec)) continue;
    looked.push_back(dir);
    if (fs::is_regular_file(dir / "best.ckpt", ec)) return dir / "best.ckpt";
    std::vector<std::pair<int64_t, fs::path>> steps;
    for (const auto& entry : fs::directory_iterator(dir, ec))
      if (entry.is_regular_file())
        if (auto step = step_of_name(entry.path().filename().string())) steps.emplace_back(*step, entry.path());
    if (!steps.empty()) return std::max_element(steps.begin(), steps.end())->second;
  }
  std::string where;
  for (const fs::path& d : looked) where += (where.empty() ? "" : " and ") + d.string();
  throw CheckpointError("no checkpoint in " + path.string() + " (looked for best.ckpt or step-N.ckpt in " + where + ")");
}

}  // namespace attnlab::train
