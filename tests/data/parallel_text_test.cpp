#include "../support/error_of.h"
#include "data/parallel_text.h"
#include "test_files.h"

#include <gtest/gtest.h>

#include <functional>
#include <sstream>

using namespace attnlab;
using namespace attnlab::data;
using attnlab::test::TempDir;
using attnlab::test::write_file;
using attnlab::test::write_gzip;

namespace {

std::string error_of(const std::function<void()>& action) { return attnlab::test::error_of<DataError>(action); }

}  // namespace

TEST(ParallelText, ReadsAlignedPairsInOrder) {
  TempDir dir;
  const auto src = write_file(dir / "a.de", "ein hund .\r\nzwei katzen .\n");
  const auto tgt = write_file(dir / "a.en", "a dog .\ntwo cats .");  // no final newline
  const ParallelText text = read_parallel_text(src, tgt);
  ASSERT_EQ(text.pairs.size(), 2u);
  EXPECT_EQ(text.lines, 2);
  EXPECT_EQ(text.pairs[0].source, "ein hund .");  // CR removed
  EXPECT_EQ(text.pairs[0].target, "a dog .");
  EXPECT_EQ(text.pairs[1].source, "zwei katzen .");
  EXPECT_EQ(text.pairs[1].target, "two cats .");
  EXPECT_TRUE(text.warnings.empty());
}

TEST(ParallelText, ReadsGzipFilesWrittenWithZlib) {
  TempDir dir;
  const std::string german = "ein mann läuft .\nzwei frauen singen .\n";
  const auto src = write_gzip(dir / "train.de.gz", german);
  const auto tgt = write_file(dir / "train.en", "a man runs .\ntwo women sing .\n");
  const ParallelText text = read_parallel_text(src, tgt);
  ASSERT_EQ(text.pairs.size(), 2u);
  EXPECT_EQ(text.pairs[0].source, "ein mann läuft .");
  EXPECT_EQ(text.pairs[1].source, "zwei frauen singen .");
  EXPECT_EQ(read_lines(src), read_lines(write_file(dir / "plain.de", german)));
}

TEST(ParallelText, TruncatedGzipIsAnErrorNamingTheFile) {
  TempDir dir;
  std::string many;
  for (int i = 0; i < 2000; ++i) many += "line number " + std::to_string(i) + " of a long file\n";
  const auto full = write_gzip(dir / "full.gz", many);
  const std::string bytes = test::read_text_file(full);
  const auto cut = write_file(dir / "cut.gz", bytes.substr(0, bytes.size() / 2));
  const std::string message = error_of([&] { read_lines(cut); });
  EXPECT_NE(message.find(cut + ": corrupt gzip data"), std::string::npos) << message;
}

TEST(ParallelText, MissingFileIsNamed) {
  TempDir dir;
  const auto tgt = write_file(dir / "a.en", "a dog .\n");
  const std::string missing = (dir / "missing.de").string();
  EXPECT_EQ(error_of([&] { read_parallel_text(missing, tgt); }), "cannot open " + missing + ": No such file or directory");
  EXPECT_EQ(error_of([&] { read_lines(missing + ".gz"); }),
            "cannot open " + missing + ".gz: No such file or directory");
}

TEST(ParallelText, ALineOverTheBoundIsRefusedWhileReading) {
  TempDir dir;
  const std::string longest(kMaxLineBytes, 'a');
  const auto ok = write_file(dir / "ok.txt", "b\n" + longest + "\r\nc");  // the CR is part of the line until it is dropped
  EXPECT_EQ(error_of([&] { read_lines(ok); }), ok + ":2: a line longer than 1 MiB");
  const auto fits = write_file(dir / "fits.txt", "b\n" + longest + "\nc");
  EXPECT_EQ(read_lines(fits).size(), 3u);
  const auto gz = write_gzip(dir / "bomb.gz", "x\ny\n" + std::string(3 << 20, 'z'));  // a gzip bomb of one line
  EXPECT_EQ(error_of([&] { read_lines(gz); }), gz + ":3: a line longer than 1 MiB");
  EXPECT_EQ(read_lines(gz, kMaxTextLineBytes).size(), 3u);  // a language model's text: its own bound
  EXPECT_EQ(error_of([&] { read_lines("/dev/zero"); }), "/dev/zero:1: a line longer than 1 MiB");  // has no end
}

TEST(ParallelText, EmptyFileIsAnError) {
  TempDir dir;
  const auto src = write_file(dir / "a.de", "");
  const auto tgt = write_file(dir / "a.en", "a dog .\n");
  EXPECT_EQ(error_of([&] { read_parallel_text(src, tgt); }), src + ": empty file");
  EXPECT_EQ(error_of([&] { read_parallel_text(tgt, src); }), src + ": empty file");
  const auto empty_gz = write_gzip(dir / "b.de.gz", "");
  EXPECT_EQ(error_of([&] { read_parallel_text(empty_gz, tgt); }), empty_gz + ": empty file");
}

TEST(ParallelText, DifferentLineCountsNameBothFilesAndCounts) {
  TempDir dir;
  const auto src = write_file(dir / "a.de", "eins\nzwei\ndrei\n");
  const auto tgt = write_file(dir / "a.en", "one\ntwo\n");
  EXPECT_EQ(error_of([&] { read_parallel_text(src, tgt); }),
            "line counts differ: " + src + " has 3 lines, " + tgt + " has 2 lines");
}

TEST(ParallelText, InvalidUtf8NamesFileLineAndColumn) {
  TempDir dir;
  const auto src = write_file(dir / "a.de", "gut\nsehr \xFFgut\n");
  const auto tgt = write_file(dir / "a.en", "good\nvery good\n");
  EXPECT_EQ(error_of([&] { read_parallel_text(src, tgt); }), src + ":2:6: invalid UTF-8 (byte 0xFF)");
  const auto src_ok = write_file(dir / "b.de", "gut\nsehr gut\n");
  const auto tgt_bad = write_file(dir / "b.en", "go\xC3\x28od\nvery good\n");  // 0xC3 not followed by a continuation
  EXPECT_EQ(error_of([&] { read_parallel_text(src_ok, tgt_bad); }), tgt_bad + ":1:3: invalid UTF-8 (byte 0xC3)");
}

TEST(ParallelText, Utf8ValidationIsStrict) {
  EXPECT_FALSE(find_invalid_utf8("plain ascii"));
  EXPECT_FALSE(find_invalid_utf8("grüße € 𝄞"));
  EXPECT_EQ(find_invalid_utf8("a\xC0\x80"), 1u);          // overlong NUL
  EXPECT_EQ(find_invalid_utf8("ab\xED\xA0\x80"), 2u);     // UTF-16 surrogate
  EXPECT_EQ(find_invalid_utf8("\xF4\x90\x80\x80"), 0u);   // above U+10FFFF
  EXPECT_EQ(find_invalid_utf8("abc\xE2\x82"), 3u);        // truncated sequence
  EXPECT_EQ(find_invalid_utf8("\x80"), 0u);               // lone continuation byte
}

TEST(ParallelText, EmptyLinesAreCountedSkipsWithOneWarning) {
  TempDir dir;
  const auto src = write_file(dir / "a.de", "eins\n\nzwei\ndrei\n   \n");
  const auto tgt = write_file(dir / "a.en", "one\nnothing\n\nthree\nfive\n");
  std::ostringstream printed;
  ParallelTextOptions options;
  options.warnings_to = &printed;
  const ParallelText text = read_parallel_text(src, tgt, options);
  ASSERT_EQ(text.pairs.size(), 2u);
  EXPECT_EQ(text.pairs[0].target, "one");
  EXPECT_EQ(text.pairs[1].target, "three");  // alignment kept after the skips
  EXPECT_EQ(text.skipped_empty, 3);
  ASSERT_EQ(text.warnings.size(), 1u);
  EXPECT_EQ(text.warnings[0], "warning: " + src + " / " + tgt + ": skipped 3 pair(s) with an empty line (first at line 2)");
  EXPECT_EQ(printed.str(), text.warnings[0] + "\n");
}

TEST(ParallelText, OverLongLinesAreCountedSkipsWithOneWarning) {
  TempDir dir;
  const auto src = write_file(dir / "a.de", "a b c\na b c d e\nx\na b c d e f\n");
  const auto tgt = write_file(dir / "a.en", "a b c\nshort\nx y z w v u\nshort\n");
  ParallelTextOptions options;
  options.max_tokens = 4;
  const ParallelText text = read_parallel_text(src, tgt, options);
  ASSERT_EQ(text.pairs.size(), 1u);
  EXPECT_EQ(text.pairs[0].source, "a b c");
  EXPECT_EQ(text.skipped_too_long, 3);
  ASSERT_EQ(text.warnings.size(), 1u);
  EXPECT_EQ(text.warnings[0], "warning: " + src + " / " + tgt + ": skipped 3 pair(s) longer than 4 tokens (first at line 2)");

  options.max_tokens = 0;  // no limit
  EXPECT_EQ(read_parallel_text(src, tgt, options).pairs.size(), 4u);
}

TEST(ParallelText, NothingLeftAfterSkippingIsAnError) {
  TempDir dir;
  const auto src = write_file(dir / "a.de", "\na b c d e\n");
  const auto tgt = write_file(dir / "a.en", "one\nshort\n");
  ParallelTextOptions options;
  options.max_tokens = 3;
  EXPECT_EQ(error_of([&] { read_parallel_text(src, tgt, options); }),
            "no sentence pairs left in " + src + " / " + tgt + " after skipping 1 empty and 1 over-long pair(s)");
}

TEST(ParallelText, WhitespaceTokensAndJointSentences) {
  EXPECT_EQ(count_tokens("  a\tb  c \n"), 3);
  EXPECT_EQ(split_whitespace(" x  y\tz "), (std::vector<std::string_view>{"x", "y", "z"}));
  const std::vector<SentencePair> pairs = {{"s1", "t1"}, {"s2", "t2"}};
  EXPECT_EQ(joint_sentences(pairs), (std::vector<std::string_view>{"s1", "s2", "t1", "t2"}));
}

// gzread would pass random bytes through as text and stop quietly at trailing garbage: every byte
// of a .gz must belong to a complete gzip member.
TEST(ParallelText, GzipMustBeGzipToTheLastByte) {
  TempDir dir;
  const auto random = write_file(dir / "random.de.gz", "\x8b\x1f\x08 random bytes\nmore\n");
  EXPECT_EQ(error_of([&] { read_lines(random); }),
            random + ": not gzip data (the file does not start with the gzip signature 1f 8b)");
  const std::string member = test::read_text_file(write_gzip(dir / "one.gz", "ein hund .\n"));
  const auto trailing = write_file(dir / "trailing.gz", member + "XYZ");
  EXPECT_EQ(error_of([&] { read_lines(trailing); }),
            trailing + ": corrupt gzip data: 3 byte(s) of trailing data after the gzip stream (at byte " +
                std::to_string(member.size()) + ")");
  const auto two = write_file(dir / "two.gz", member + member);  // concatenated members are one stream
  EXPECT_EQ(read_lines(two), (std::vector<std::string>{"ein hund .", "ein hund ."}));
  std::string flipped = member;
  flipped[flipped.size() - 6] = static_cast<char>(flipped[flipped.size() - 6] ^ 0x40);  // inside the CRC
  const auto bad_crc = write_file(dir / "crc.gz", flipped);
  EXPECT_NE(error_of([&] { read_lines(bad_crc); }).find(bad_crc + ": corrupt gzip data"), std::string::npos);
}

TEST(ParallelText, ControlBytesAreRefusedWithFileAndLine) {
  TempDir dir;
  const auto src = write_file(dir / "a.de", std::string("ein hund .\nzwei\0katzen .\n", 25));
  const auto tgt = write_file(dir / "a.en", "a dog .\ntwo cats .\n");
  EXPECT_EQ(error_of([&] { read_parallel_text(src, tgt); }), src + ":2:5: control byte 0x00 in text");
  const auto escape = write_file(dir / "b.en", "a dog .\ntwo \x1b[31mcats\n");
  EXPECT_EQ(error_of([&] { read_parallel_text(write_file(dir / "b.de", "ein hund .\nzwei katzen .\n"), escape); }),
            escape + ":2:5: control byte 0x1B in text");
  EXPECT_FALSE(check_text_line("tab\tand\rcr and \v\f are text"));
}
