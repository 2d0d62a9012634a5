// Graph IR: values, attributes, reading and writing (binary and text), printing.
#include "ir/graph.h"
#include "ir/protobuf_log.h"
#include "test_nodes.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

namespace attnlab {
namespace {

using test::GraphBuilder;

ir::GraphDef sample_graph() {
  GraphBuilder b;
  b.graph.set_name("sample");
  b.input("x", {std::string("batch"), int64_t{4}});
  b.node("h", "test.matmul", {"x"}, {{"out", int64_t{5}}}, 3, 5, "shared");
  b.node("f", "test.fork", {"h"}, {}, 4, 5);
  b.node("y", "test.add", {"f", "f:1"}, {}, 5, 5);
  b.node("n", "test.noise", {"y"}, {{"amount", 0.25}}, 6, 5);
  ir::NodeDef& flags = b.node("c", "test.check", {"n"}, {}, 7, 5);
  (*flags.mutable_attrs())["flag"].set_b(true);
  (*flags.mutable_attrs())["label"].set_s("quoted \"text\"");
  b.output("out", "c");
  return b.graph;
}

std::filesystem::path temp_path(const std::string& name) {
  return std::filesystem::temp_directory_path() / ("attnlab_exec_" + std::to_string(::getpid()) + "_" + name);
}

TEST(IrValues, ParseAndName) {
  EXPECT_EQ(ir::parse_value("enc.layer0.attn").name, "enc.layer0.attn");
  EXPECT_EQ(ir::parse_value("enc.layer0.attn").port, 0);
  EXPECT_EQ(ir::parse_value("loss:2").name, "loss");
  EXPECT_EQ(ir::parse_value("loss:2").port, 2);
  EXPECT_EQ(ir::parse_value("a:b").name, "a:b");  // not a port number: part of the name
  EXPECT_EQ(ir::value_name("n", 0), "n");
  EXPECT_EQ(ir::value_name("n", 3), "n:3");
}

TEST(IrAttrs, RoundTripEveryType) {
  Attrs attrs{{"i", int64_t{7}}, {"f", 0.5}, {"b", true}, {"s", std::string("posenc.none")}};
  ir::NodeDef node;
  ir::set_attrs(node, attrs);
  const Attrs back = ir::to_attrs(node);
  EXPECT_EQ(back.get_int("i"), 7);
  EXPECT_EQ(back.get_float("f"), 0.5);
  EXPECT_EQ(back.get_bool("b"), true);
  EXPECT_EQ(back.get_string("s"), "posenc.none");
  (*node.mutable_attrs())["unset"];  // present but without a value
  EXPECT_THROW(ir::to_attrs(node), std::invalid_argument);
}

TEST(IrFiles, BinaryRoundTrip) {
  const ir::GraphDef graph = sample_graph();
  const auto path = temp_path("graph.pb");
  ir::write_graph(graph, path);
  const ir::GraphDef back = ir::read_graph(path);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(back, graph)) << back.DebugString();
  // Deterministic bytes: writing what was read gives the same file.
  const auto again = temp_path("again.pb");
  ir::write_graph(back, again);
  std::ifstream a(path, std::ios::binary), b(again, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(a), {}), std::string(std::istreambuf_iterator<char>(b), {}));
  std::filesystem::remove(path);
  std::filesystem::remove(again);
}

TEST(IrFiles, TextRoundTrip) {
  const ir::GraphDef graph = sample_graph();
  const auto path = temp_path("graph.pbtxt");
  ir::write_graph(graph, path);
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, ir::to_pbtxt(graph));
  EXPECT_NE(text.find("type: \"test.matmul\""), std::string::npos);
  const ir::GraphDef back = ir::read_graph(path);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(back, graph)) << back.DebugString();
  std::filesystem::remove(path);
}

TEST(IrFiles, MissingFileNamesIt) {
  const auto path = temp_path("does_not_exist.pbtxt");
  try {
    ir::read_graph(path);
    FAIL() << "no error";
  } catch (const ir::GraphError& e) {
    EXPECT_EQ(std::string(e.what()), path.string() + ": error: cannot read graph: no such file");
  }
}

TEST(IrFiles, UnparsableTextGivesLineAndColumn) {
  const auto path = temp_path("broken.pbtxt");
  std::ofstream(path) << "name: \"g\"\nnodes {\n  name: \"a\"\n  tpye: \"x\"\n}\n";
  try {
    ir::read_graph(path);
    FAIL() << "no error";
  } catch (const ir::GraphError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind(path.string() + ":4:", 0), 0u) << what;
    EXPECT_NE(what.find("not a valid graph in protobuf text format"), std::string::npos) << what;
    EXPECT_NE(what.find("tpye"), std::string::npos) << what;
  }
  std::filesystem::remove(path);
}

TEST(IrFiles, UnparsableBinaryNamesFile) {
  const auto path = temp_path("broken.pb");
  std::ofstream(path, std::ios::binary) << "\xff\xff\xff garbage";
  try {
    ir::read_graph(path);
    FAIL() << "no error";
  } catch (const ir::GraphError& e) {
    EXPECT_EQ(std::string(e.what()),
              path.string() + ": error: not a valid graph in binary protobuf format (text graphs must end in .pbtxt)");
  }
  std::filesystem::remove(path);
}

TEST(IrFiles, UnwritablePathNamesIt) {
  const std::filesystem::path path = "/nonexistent_dir_attnlab/graph.pb";
  try {
    ir::write_graph(sample_graph(), path);
    FAIL() << "no error";
  } catch (const ir::GraphError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path.string() + ": error: cannot write graph: ", 0), 0u) << e.what();
  }
}

TEST(IrPrint, Text) {
  const std::string text = ir::to_text(sample_graph());
  EXPECT_NE(text.find("graph sample\n"), std::string::npos) << text;
  EXPECT_NE(text.find("input x[batch, 4] real\n"), std::string::npos) << text;
  EXPECT_NE(text.find("h = test.matmul(out: 5)(x) params shared  @ model.attn:3:5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("y = test.add()(f, f:1)  @ model.attn:5:5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("n = test.noise(amount: 0.25)(y)"), std::string::npos) << text;
  EXPECT_NE(text.find("output out = c\n"), std::string::npos) << text;
}

TEST(IrPrint, DotHasTypedLabelsAndEdges) {
  const std::string dot = ir::to_dot(sample_graph());
  EXPECT_EQ(dot.rfind("digraph \"sample\" {", 0), 0u) << dot;
  EXPECT_NE(dot.find("\"h\" [shape=box, label=\"h\\ntest.matmul\"];"), std::string::npos) << dot;
  EXPECT_NE(dot.find("\"in:x\" -> \"h\";"), std::string::npos) << dot;
  EXPECT_NE(dot.find("\"f\" -> \"y\" [label=\":1\"];"), std::string::npos) << dot;
  EXPECT_NE(dot.find("\"c\" -> \"out:out\";"), std::string::npos) << dot;
  EXPECT_EQ(dot.find("quoted"), std::string::npos) << "labels carry the name and type only";
  EXPECT_EQ(dot.back(), '\n');
}

TEST(IrDiagnostics, FormatWithAndWithoutFile) {
  ir::Diagnostic located{{}, "bad"};
  located.loc.set_file("a.attn");
  located.loc.set_line(3);
  located.loc.set_column(9);
  ir::Diagnostic bare{{}, "worse"};
  bare.loc.set_line(2);
  bare.loc.set_column(1);
  ir::Diagnostic nowhere{{}, "worst"};
  EXPECT_EQ(ir::format({located, bare, nowhere}),
            "a.attn:3:9: error: bad\n<graph>:2:1: error: worse\n<graph>: error: worst\n");
  ir::GraphError error({located, bare});
  EXPECT_EQ(std::string(error.what()), "a.attn:3:9: error: bad\n<graph>:2:1: error: worse");
  EXPECT_EQ(error.diagnostics.size(), 2u);
}

// A GraphDef whose node name is not UTF-8: protobuf refuses it and says why only to its log.
std::string graph_with_bad_utf8() {
  ir::GraphDef g;
  g.add_nodes()->set_name("n\xff");
  const ir::ProtobufLogCapture quiet;
  return g.SerializeAsString();
}

TEST(ProtobufLogCapture, KeepsTheReasonOnItsThreadAndForwardsEverythingElse) {
  const std::string bytes = graph_with_bad_utf8();
  ir::GraphDef g;
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(g.ParseFromString(bytes));  // no capture alive: protobuf's own handler prints
  const std::string printed = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(printed.find("libprotobuf ERROR"), std::string::npos) << printed;
  EXPECT_NE(printed.find("invalid UTF-8"), std::string::npos) << printed;

  ::testing::internal::CaptureStderr();
  {
    const ir::ProtobufLogCapture outer;
    {
      const ir::ProtobufLogCapture inner;
      EXPECT_FALSE(g.ParseFromString(bytes));
      EXPECT_EQ(inner.reason(), "String field 'attnlab.ir.NodeDef.name' contains invalid UTF-8 data when parsing a protocol buffer");
    }
    EXPECT_EQ(outer.reason(), "");  // the innermost capture took it
    std::thread([&] { ir::GraphDef h; EXPECT_FALSE(h.ParseFromString(bytes)); }).join();  // another thread: printed
    EXPECT_EQ(outer.reason(), "");
  }
  const std::string other_thread = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(other_thread.find("invalid UTF-8"), std::string::npos) << other_thread;
  EXPECT_EQ(other_thread.find("libprotobuf ERROR"), other_thread.rfind("libprotobuf ERROR")) << other_thread;  // printed once
}

TEST(IrFiles, BinaryGraphWithInvalidUtf8SaysWhichField) {
  const auto path = temp_path("bad_utf8.pb");
  std::ofstream(path, std::ios::binary) << graph_with_bad_utf8();
  try {
    (void)ir::read_graph(path);
    ADD_FAILURE() << "accepted";
  } catch (const ir::GraphError& e) {
    EXPECT_EQ(std::string(e.what()), path.string() + ": error: not a valid graph in binary protobuf format (String field "
                                     "'attnlab.ir.NodeDef.name' contains invalid UTF-8 data when parsing a protocol buffer)");
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace attnlab
