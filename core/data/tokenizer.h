// core/data/tokenizer.h — text ↔ token ids: a word vocabulary and a SentencePiece BPE model.
//
// Contract:
// - Special ids are the same for every tokenizer:
//     <pad> = 0 (padding; batches are padded with it, losses ignore it)
//     <unk> = 1 (anything outside the vocabulary)
//     <s>   = 2 (beginning of sentence; prefixes the decoder input)
//     </s>  = 3 (end of sentence; ends the decoder output)
//   Ordinary pieces start at id 4.
// - encode(text) gives the ids of the text WITHOUT <s> or </s> (the batcher adds them).
//   decode(ids) drops <pad>, <s> and </s>, and stops nowhere: callers cut at </s> themselves.
// - serialize() gives self-describing bytes (a header naming the kind, then the payload) that
//   load_tokenizer() turns back into an equal tokenizer: a checkpoint that carries these bytes
//   translates raw text without any other file. Corrupt or truncated bytes throw DataError.
// - Word vocabulary (kind "word"): joint over source and target; tokens are whitespace-separated;
//   a token seen fewer than `min_count` times maps to <unk>; ids 4.. are sorted by descending count,
//   ties by byte order (so the vocabulary is a pure function of the text). Its input is expected
//   tokenized like the training data (Multi30k's *.lc.norm.tok files: lowercased, Moses-tokenized);
//   normalize_for_word_vocab() brings raw text close to that form.
// - SentencePiece BPE (kind "sentencepiece"): a joint model trained in-process from the training
//   sentences with Debian's libsentencepiece; it normalizes raw text itself (NFKC), so it takes raw
//   text directly. The vocabulary size is a soft limit (a small corpus may give fewer pieces).
//   Training uses `num_threads` of SentencePiece's own threads (1 by default); it runs once, before
//   any executor. Debian's SentencePiece carries a private copy of Protocol Buffers that clashes with
//   the system one attnlab links, so it is used through the module libattnlab_sentencepiece.so,
//   loaded with its own symbol scope (RTLD_LOCAL | RTLD_DEEPBIND) from the path in the environment
//   variable ATTNLAB_SENTENCEPIECE_MODULE when set (and then only from there), else from beside the
//   executable, from lib/attnlab/ of an installation, or from the build tree. A missing module
//   throws DataError "cannot find the SentencePiece module libattnlab_sentencepiece.so (searched:
//   PATHS)"; a file that is not the module, "cannot load the SentencePiece module PATH: REASON".
#pragma once

#include "data/parallel_text.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab::data {

inline constexpr int kPadId = 0;
inline constexpr int kUnkId = 1;
inline constexpr int kBosId = 2;
inline constexpr int kEosId = 3;
inline constexpr int kFirstPieceId = 4;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string kind() const = 0;  // "word", "char" or "sentencepiece"
  virtual int64_t vocab_size() const = 0;  // ids are 0 .. vocab_size()-1, specials included
  virtual std::vector<int> encode(std::string_view text) const = 0;
  virtual std::string decode(const std::vector<int>& ids) const = 0;
  virtual std::string piece(int id) const = 0;  // the piece's text ("<unk>" etc. for specials)
  virtual std::string serialize() const = 0;
};

std::unique_ptr<Tokenizer> load_tokenizer(std::string_view bytes);

struct WordVocabOptions {
  int64_t min_count = 1;  // tokens seen fewer times map to <unk>
  int64_t max_size = 0;   // 0: no limit; otherwise at most this many ids, specials included
};
std::unique_ptr<Tokenizer> build_word_vocab(const std::vector<std::string_view>& sentences,
                                            const WordVocabOptions& options = {});

// Character vocabulary (kind "char", for language models): every distinct UTF-8 character of
// `text` (an invalid byte stands for itself), ids 4.. in byte order, the specials as above.
// encode() maps each character to its id (<unk> outside the vocabulary), decode() concatenates.
std::unique_ptr<Tokenizer> build_char_vocab(std::string_view text);

struct SentencePieceOptions {
  int64_t vocab_size = 8000;
  double character_coverage = 1.0;  // 1.0 keeps every character (fine for European languages)
  int64_t max_sentences = 0;        // 0: train on every sentence; otherwise a sample of this many
  uint32_t seed = 1;                // SentencePiece's sampling seed
  int num_threads = 1;
};
// train_sentencepiece() refuses (DataError) a vocab_size above sentencepiece_vocab_floor(): asked
// for more pieces than it can merge, SentencePiece's BPE trainer crashes instead of stopping.
std::unique_ptr<Tokenizer> train_sentencepiece(const std::vector<std::string_view>& sentences,
                                               const SentencePieceOptions& options = {});

// A number of pieces SentencePiece's BPE training is sure to reach on `sentences`. Asked for more
// pieces than it can merge, its trainer (0.1.97) does not stop but crashes (SIGSEGV in
// bpe::Trainer::Train), so larger vocabularies are refused before it is called.
//
// Why this is a floor: BPE merges until no pair is left, and then every distinct word part is one
// piece, made by a merge. The word parts counted here are at least as coarse as the trainer's own
// splitting (on whitespace, between letters, digits and punctuation, before any other script's
// character, and at 16 characters), so each distinct one of two to 16 characters is a piece; add
// the special pieces and, at full character coverage, every distinct character.
int64_t sentencepiece_vocab_floor(const std::vector<std::string_view>& sentences, double character_coverage = 1.0);

// Raw text toward Multi30k's *.lc.norm.tok form: lowercase (ASCII and Latin letters with accents,
// e.g. "Ä" → "ä"), whitespace collapsed, punctuation . , ! ? ; : ( ) [ ] { } " split off as its
// own token, an apostrophe between letters starting the next token ("kid's" → "kid &apos;s"), and
// Moses's escapes & → &amp;, ' → &apos;, " → &quot;, < → &lt;, > → &gt;. Hyphens inside words are
// kept. Invalid UTF-8 bytes become U+FFFD.
std::string normalize_for_word_vocab(std::string_view raw);

}  // namespace attnlab::data
