// core/ir/protobuf_log.cpp — see protobuf_log.h.
#include "ir/protobuf_log.h"

#include <google/protobuf/stubs/logging.h>

#include <mutex>

namespace attnlab::ir {

namespace {

thread_local ProtobufLogCapture* innermost = nullptr;
google::protobuf::LogHandler* previous_handler = nullptr;

}  // namespace

struct ProtobufLogHandler {
  static void handle(google::protobuf::LogLevel level, const char* file, int line, const std::string& message) {
    if (innermost != nullptr && level != google::protobuf::LOGLEVEL_FATAL) {
      if (innermost->first_message_.empty()) innermost->first_message_ = message;
      return;
    }
    if (previous_handler != nullptr) previous_handler(level, file, line, message);
  }
};

ProtobufLogCapture::ProtobufLogCapture() : outer_(innermost) {
  static std::once_flag installed;
  std::call_once(installed, [] { previous_handler = google::protobuf::SetLogHandler(&ProtobufLogHandler::handle); });
  innermost = this;
}

ProtobufLogCapture::~ProtobufLogCapture() { innermost = outer_; }

std::string ProtobufLogCapture::reason() const {
  std::string s = first_message_.substr(0, first_message_.find(". "));
  while (!s.empty() && (s.back() == ' ' || s.back() == '.' || s.back() == '\n')) s.pop_back();
  return s;
}

}  // namespace attnlab::ir
