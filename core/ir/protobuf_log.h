// core/ir/protobuf_log.h — protobuf's own reason for refusing a message, for attnlab's errors.
//
// Protobuf says why a parse failed (a string field that is not valid UTF-8, a required field left
// out, ...) only through its log, which prints "[libprotobuf ERROR file:line] ..." on stderr, apart
// from the error attnlab reports for the same file. A ProtobufLogCapture lets the caller put that
// reason into its own error instead.
//
// Contract:
// - While a ProtobufLogCapture is alive on a thread, every message protobuf logs on that thread
//   (below FATAL) is kept by the innermost live capture of the thread and printed nowhere.
// - Messages logged on other threads, FATAL messages, and every message while no capture is alive
//   go to the handler that was installed before the first capture was made (protobuf's stderr
//   handler unless the program set its own).
// - The first capture installs attnlab's handler with google::protobuf::SetLogHandler, which is
//   not thread-safe: a program that sets its own handler must do so before, or never.
#pragma once

#include <string>

namespace attnlab::ir {

class ProtobufLogCapture {
 public:
  ProtobufLogCapture();
  ~ProtobufLogCapture();
  ProtobufLogCapture(const ProtobufLogCapture&) = delete;
  ProtobufLogCapture& operator=(const ProtobufLogCapture&) = delete;

  // The first sentence of the first message logged since construction, without its final period
  // ("" if none was). Later sentences of protobuf's messages are advice to the schema's author.
  std::string reason() const;

 private:
  std::string first_message_;
  ProtobufLogCapture* outer_;
  friend struct ProtobufLogHandler;
};

}  // namespace attnlab::ir
