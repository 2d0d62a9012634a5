// attnlab graph FILE [--format text|dot|pbtxt] — print the elaborated layer graph.
#include "app/spec_options.h"

#include <iostream>

namespace attnlab::cli {

void add_graph_command(CLI::App& app, CommonOptions& options) {
  auto spec = std::make_shared<SpecOptions>();
  auto format = std::make_shared<std::string>("text");
  CLI::App* command = app.add_subcommand("graph", "Print the elaborated layer graph of a model");
  add_spec_options(*command, *spec);
  command->add_option("--format", *format, "text (one line a node), dot (Graphviz) or pbtxt (protobuf text)")
      ->check(CLI::IsMember({"text", "dot", "pbtxt"}));
  add_common_options(*command, options);
  command->callback([spec, format, &options] {
    dsl::ElaboratedModel model = elaborate_spec(*spec, options);
    if (*format == "dot") std::cout << ir::to_dot(model.graph);
    else if (*format == "pbtxt") std::cout << ir::to_pbtxt(model.graph);
    else std::cout << ir::to_text(model.graph);
  });
}

}  // namespace attnlab::cli
