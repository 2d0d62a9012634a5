// `attnlab bleu --ref FILE [--hyp FILE]`: corpus BLEU of tokenized text, multi-bleu.perl's line.
// Both inputs must be text (UTF-8, no control bytes): the first bad line is an error naming it.
#include "app/cli.h"
#include "data/parallel_text.h"
#include "eval/bleu.h"

#include <iostream>

namespace attnlab::cli {

void add_bleu_command(CLI::App& app) {
  CLI::App* command = app.add_subcommand("bleu", "Corpus BLEU of tokenized text (as multi-bleu.perl)");
  auto ref = std::make_shared<std::string>();
  auto hyp = std::make_shared<std::string>();
  command->add_option("--ref", *ref, "Reference file, one tokenized sentence a line (.gz accepted)")->required();
  command->add_option("--hyp", *hyp, "Hypothesis file (default: standard input)");
  command->callback([ref, hyp] {
    std::vector<std::string> references, hypotheses;
    try {
      // Text only: a binary file (NUL or control bytes, invalid UTF-8) is refused, not scored.
      references = data::read_lines(*ref);
      data::check_text_lines(references, *ref);
      hypotheses = hyp->empty() ? read_lines(std::cin) : data::read_lines(*hyp);
      if (!hyp->empty()) data::check_text_lines(hypotheses, *hyp);
    } catch (const data::DataError& e) {
      throw CliError(1, e.what());
    }
    const std::string hyp_name = hyp->empty() ? "standard input" : *hyp;
    if (references.size() != hypotheses.size())
      throw CliError(1, "line counts differ: " + *ref + " has " + std::to_string(references.size()) + " lines, " +
                            hyp_name + " has " + std::to_string(hypotheses.size()) + " lines");
    eval::BleuStats stats;
    for (size_t i = 0; i < references.size(); ++i) stats.add(hypotheses[i], references[i]);
    if (stats.ref_len == 0) throw CliError(1, *ref + ": the reference has no tokens");
    std::cout << eval::score(stats).to_string() << '\n';
  });
}

}  // namespace attnlab::cli
