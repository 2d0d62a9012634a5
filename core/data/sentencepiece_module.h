// core/data/sentencepiece_module.h — the boundary between attnlab and Debian's SentencePiece.
//
// Why a module: libsentencepiece.so exports its own private copy of Protocol Buffers (3.14) under
// the same symbol names as the system libprotobuf (3.21) that attnlab links; in one symbol scope
// the two collide and the process aborts at start-up. libattnlab_sentencepiece.so links
// SentencePiece and nothing of attnlab, and is opened with RTLD_LOCAL | RTLD_DEEPBIND so that its
// calls bind to its own copy. Only this table of plain functions crosses the boundary (both sides
// share the process's libstdc++, so std::string and std::vector pass through unchanged), and no
// exception does: every failure, SentencePiece's thrown ones included, is a false or null return
// with `error` filled.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

extern "C" {

struct AttnlabSentencePieceApi {
  int abi_version;  // kAttnlabSentencePieceAbi
  // Trains a model from `sentences` with SentencePiece trainer flags `flags` (name, value); on
  // success fills `model` with the serialized ModelProto and returns true, else fills `error`.
  bool (*train)(const std::vector<std::string_view>* sentences,
                const std::vector<std::pair<std::string, std::string>>* flags, std::string* model,
                std::string* error);
  // A processor for a serialized model, or nullptr with `error` filled. Release with destroy().
  void* (*load)(const std::string* model, std::string* error);
  void (*destroy)(void* processor);
  bool (*encode)(const void* processor, std::string_view text, std::vector<int>* ids, std::string* error);
  bool (*decode)(const void* processor, const std::vector<int>* ids, std::string* text, std::string* error);
  int (*piece_size)(const void* processor);
  void (*id_to_piece)(const void* processor, int id, std::string* piece);
  // Seeds SentencePiece's process-wide random generator (used when it samples sentences).
  void (*set_random_seed)(unsigned seed);
};

const AttnlabSentencePieceApi* attnlab_sentencepiece_api();
}

inline constexpr int kAttnlabSentencePieceAbi = 1;
inline constexpr const char* kAttnlabSentencePieceEntry = "attnlab_sentencepiece_api";
