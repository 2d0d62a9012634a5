// dsl/parser.cpp — the X3 grammar of the architecture language and the driver that parses a file
// declaration by declaration (so that one syntax error does not hide the next).
//
// Every x3 rule lives in this translation unit: Spirit X3 is slow to compile, and one unit keeps
// the cost paid once. The EBNF in docs/dsl.md mirrors the rules below.
#include "dsl/parser.h"

#include <boost/fusion/include/adapt_struct.hpp>
#include <boost/spirit/home/x3.hpp>

#include <algorithm>
#include <cctype>
#include <cstring>

BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::Number, offset, text)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::String, offset, value)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::Bool, offset, value)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::Name, offset, text)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::List, offset, items)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::CallArgs, offset, args)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::Operation, op, operand)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::Expr, first, rest)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::Unary, op, operand)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::Arg, name, value)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::Postfix, primary, calls)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::Repeat, count, shared, body)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::ParamDef, name, value)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::UseDecl, slot, type)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::Assign, name, value)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::InputDecl, name, kind, bound, dims)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::OutputDecl, name, value)
BOOST_FUSION_ADAPT_STRUCT(attnlab::dsl::ast::Setting, key, value)

namespace attnlab::dsl {
namespace {

namespace x3 = boost::spirit::x3;
using Iterator = const char*;

// ---- Position tagging ---------------------------------------------------------------------------

struct begin_tag;  // the start of the text, so that on_success can compute offsets

struct tag_position {
  template <typename Iter, typename T, typename Context>
  void on_success(const Iter& first, const Iter&, T& node, const Context& context) const {
    if constexpr (std::is_base_of_v<ast::Tagged, T>) node.offset = static_cast<int>(first - x3::get<begin_tag>(context));
  }
};

// ---- Grammar ------------------------------------------------------------------------------------

using x3::char_;
using x3::lexeme;
using x3::lit;
using x3::raw;

// Character sets rather than x3::alnum/space/digit: those assert on bytes >= 0x80 (the standard
// encoding is ASCII-only), and a spec may contain any bytes.
const auto ident_char = char_("a-zA-Z0-9_");
const auto digit = char_("0-9");

const auto skipper = char_(" \t\r\n\f\v") | (lit("//") >> *(char_ - x3::eol)) | (lit("/*") >> *(char_ - lit("*/")) >> lit("*/"));

// The offset of the next token (after skipped space), consuming nothing: the first member of the
// one-field nodes (Number, Name, List, ...), which on_success cannot tag reliably.
struct position_parser : x3::parser<position_parser> {
  using attribute_type = int;
  static bool const has_attribute = true;
  template <typename It, typename Ctx, typename RCtx, typename Attr>
  bool parse(It& first, const It& last, const Ctx& ctx, RCtx&, Attr& attr) const {
    x3::skip_over(first, last, ctx);
    x3::traits::move_to(static_cast<int>(first - x3::get<begin_tag>(ctx)), attr);
    return true;
  }
};
const position_parser pos{};

// Every way an expression nests (parentheses, lists, call arguments, repeat bodies) passes through
// `postfix`, so bounding its depth bounds the grammar's recursion, and so its stack, whatever the
// text looks like to check_nesting below (which stops ordinary deep input first, with a location).
thread_local int t_postfix_depth = 0;
struct NestingTooDeep {
  const char* where;
};

template <typename Subject>
struct depth_guard_directive : x3::unary_parser<Subject, depth_guard_directive<Subject>> {
  using base = x3::unary_parser<Subject, depth_guard_directive<Subject>>;
  static bool const is_pass_through_unary = true;
  constexpr explicit depth_guard_directive(const Subject& subject) : base(subject) {}
  template <typename It, typename Ctx, typename RCtx, typename Attr>
  bool parse(It& first, const It& last, const Ctx& ctx, RCtx& rctx, Attr& attr) const {
    if (t_postfix_depth > kMaxNesting) throw NestingTooDeep{first};
    ++t_postfix_depth;
    struct Leave {
      ~Leave() { --t_postfix_depth; }
    } leave;
    return this->subject.parse(first, last, ctx, rctx, attr);
  }
};
struct depth_guard_gen {
  template <typename Subject>
  constexpr depth_guard_directive<typename x3::extension::as_parser<Subject>::value_type> operator[](
      const Subject& subject) const {
    return depth_guard_directive<typename x3::extension::as_parser<Subject>::value_type>(x3::as_parser(subject));
  }
};
constexpr depth_guard_gen depth_guard{};

const char* const kKeywords[] = {"param", "use",    "block",  "return", "input", "output", "model", "experiment",
                                 "import", "repeat", "shared", "with",   "true",  "false",  "div",   "mod"};

struct keyword_parser : x3::parser<keyword_parser> {
  using attribute_type = x3::unused_type;
  static bool const has_attribute = false;
  template <typename It, typename Ctx, typename RCtx, typename Attr>
  bool parse(It& first, const It& last, const Ctx&, RCtx&, Attr&) const {
    for (const char* k : kKeywords) {
      const size_t n = std::strlen(k);
      if (static_cast<size_t>(last - first) >= n && std::equal(k, k + n, first) &&
          (static_cast<size_t>(last - first) == n || !(std::isalnum(static_cast<unsigned char>(first[n])) || first[n] == '_'))) {
        first += n;
        return true;
      }
    }
    return false;
  }
};
const keyword_parser any_keyword{};

// A keyword: the word, not followed by an identifier character.
#define ATTNLAB_KW(var, word) const auto var = x3::rule<class var##_id>{"'" word "'"} = lexeme[lit(word) >> !ident_char]
ATTNLAB_KW(kw_param, "param");
ATTNLAB_KW(kw_use, "use");
ATTNLAB_KW(kw_block, "block");
ATTNLAB_KW(kw_return, "return");
ATTNLAB_KW(kw_input, "input");
ATTNLAB_KW(kw_output, "output");
ATTNLAB_KW(kw_model, "model");
ATTNLAB_KW(kw_experiment, "experiment");
ATTNLAB_KW(kw_import, "import");
ATTNLAB_KW(kw_repeat, "repeat");
ATTNLAB_KW(kw_with, "with");
#undef ATTNLAB_KW

struct identifier_class : tag_position {};
struct number_class : tag_position {};
struct string_class : tag_position {};
struct bool_class : tag_position {};
struct name_class : tag_position {};
struct list_class : tag_position {};
struct arg_class : tag_position {};
struct call_args_class : tag_position {};
struct primary_class : tag_position {};
struct postfix_class : tag_position {};
struct unary_class : tag_position {};
struct operand_class : tag_position {};
struct repeat_class : tag_position {};
struct term_class : tag_position {};
struct expr_class : tag_position {};
struct mul_operation_class : tag_position {};
struct add_operation_class : tag_position {};
struct param_def_class : tag_position {};
struct use_decl_class : tag_position {};
struct assign_class : tag_position {};
struct input_decl_class : tag_position {};
struct output_decl_class : tag_position {};
struct setting_class : tag_position {};

const x3::rule<identifier_class, std::string> identifier = "an identifier";
const x3::rule<number_class, ast::Number> number = "a number";
const x3::rule<string_class, ast::String> string_literal = "a string";
const x3::rule<bool_class, ast::Bool> boolean = "true or false";
const x3::rule<name_class, ast::Name> name = "a name";
const x3::rule<list_class, ast::List> list = "a list";
const x3::rule<arg_class, ast::Arg> arg = "an argument";
const x3::rule<call_args_class, ast::CallArgs> call_args = "arguments";
const x3::rule<primary_class, ast::Operand> primary = "an expression";
const x3::rule<postfix_class, ast::Postfix> postfix = "an expression";
const x3::rule<unary_class, ast::Unary> unary = "an expression";
const x3::rule<operand_class, ast::Operand> operand = "an expression";
const x3::rule<repeat_class, ast::Repeat> repeat = "repeat";
const x3::rule<term_class, ast::Expr> term = "an expression";
const x3::rule<add_operation_class, ast::Operation> add_operation = "an expression";
const x3::rule<mul_operation_class, ast::Operation> mul_operation = "an expression";
const x3::rule<expr_class, ast::Expr> expr = "an expression";

const x3::rule<class string_chars_id, std::string> string_chars = "a string";
const x3::rule<class expr_list_id, std::vector<ast::Expr>> expr_list = "expressions";
const x3::rule<class arg_list_id, std::vector<ast::Arg>> arg_list = "arguments";
const x3::rule<class mul_op_id, std::string> mul_op = "an operator";
const x3::rule<class add_op_id, std::string> add_op = "an operator";

const auto identifier_def = lexeme[!any_keyword >> char_("a-zA-Z_") >> *ident_char];

const auto number_def =
    pos >> raw[lexeme[+digit >> -('.' >> !char_("a-zA-Z_") >> *digit) >> -(char_("eE") >> -char_("+-") >> +digit)]];

const auto escaped = lit('\\') >> (lit('n') >> x3::attr('\n') | lit('t') >> x3::attr('\t') | char_("\"\\"));
const auto string_chars_def = lexeme['"' >> *(escaped | ~char_("\"\\\n")) > '"'];
const auto string_literal_def = pos >> string_chars;

const auto boolean_def = pos >> (lexeme[lit("true") >> !ident_char] >> x3::attr(true) |
                                 lexeme[lit("false") >> !ident_char] >> x3::attr(false));

const auto name_def = pos >> raw[lexeme[identifier >> *('.' >> char_("a-zA-Z_") >> *ident_char)]];

const auto expr_list_def = -(expr % ',');
const auto list_def = pos >> '[' >> expr_list >> -lit(',') > ']';

const x3::rule<class arg_name_id, std::string> arg_name = "an argument name";
const auto arg_name_def = identifier >> ':';
const x3::rule<class shared_word_id, std::string> shared_word = "'shared'";
const auto shared_word_def = lexeme[x3::string("shared") >> !ident_char];
const auto arg_def = -(&arg_name >> arg_name) >> expr;
const auto arg_list_def = -(arg % ',');
const auto call_args_def = pos >> '(' >> arg_list > ')';

const auto repeat_def = kw_repeat > '(' > expr > -(',' > shared_word) > ')' > postfix;

const auto primary_def = number | string_literal | boolean | list | repeat | name | ('(' > expr > ')');
const auto postfix_def = depth_guard[primary >> *call_args];
const auto unary_def = x3::string("-") > postfix;
const auto operand_def = unary | postfix;

const auto mul_op_def = x3::string("*") | x3::string("/") | lexeme[x3::string("div") >> !ident_char] |
                        lexeme[x3::string("mod") >> !ident_char];
const auto add_op_def = x3::string("+") | x3::string("-");
const auto mul_operation_def = mul_op > operand;
const auto term_def = operand >> *mul_operation;
const auto add_operation_def = add_op > term;
const auto expr_def = term >> *add_operation;

BOOST_SPIRIT_DEFINE(identifier, number, string_chars, string_literal, boolean, name, expr_list, list, arg, arg_list,
                    call_args, arg_name, shared_word, repeat, primary, postfix, unary, operand, mul_op, add_op, mul_operation, add_operation,
                    term, expr)
// Declarations (driven one at a time by Parser below).
const x3::rule<param_def_class, ast::ParamDef> param_def = "a parameter definition";
const x3::rule<use_decl_class, ast::UseDecl> use_decl = "a use declaration";
const x3::rule<assign_class, ast::Assign> assign = "an assignment";
const x3::rule<input_decl_class, ast::InputDecl> input_decl = "an input declaration";
const x3::rule<output_decl_class, ast::OutputDecl> output_decl = "an output declaration";
const x3::rule<setting_class, ast::Setting> setting = "a setting";
const x3::rule<class param_defs_id, std::vector<ast::ParamDef>> param_defs = "parameter definitions";
const x3::rule<class names_id, std::vector<std::string>> names = "names";

const auto param_def_def = identifier > '=' > expr;
const auto param_defs_def = param_def % ',';
const auto use_decl_def = identifier > '=' > name;
const auto assign_def = identifier >> '=' > expr;
const auto input_decl_def = identifier > ':' > identifier > -('(' > expr > ')') > '[' > (expr % ',') > ']';
const auto output_decl_def = identifier > '=' > expr;
const x3::rule<class setting_key_id, std::string> setting_key = "a setting name";
const auto setting_key_def = raw[lexeme[identifier >> *('.' >> char_("a-zA-Z_") >> *ident_char)]];
const auto setting_def = setting_key >> (lit('=') | lit(':')) > expr;
const auto names_def = -(identifier % ',');

BOOST_SPIRIT_DEFINE(param_def, param_defs, use_decl, assign, input_decl, output_decl, setting_key, setting, names)


// ---- Driver -------------------------------------------------------------------------------------

// Parses declarations one at a time. After a syntax error it reports it, skips to the next line
// that starts a declaration at the same brace depth, and goes on.
class Parser {
 public:
  Parser(const SourceFile& source, Diagnostics& diagnostics)
      : source_(source), diags_(diagnostics), begin_(source.text().data()), end_(begin_ + source.text().size()), it_(begin_) {}

  ast::File parse_file() {
    ast::File file;
    while (true) {
      skip();
      if (it_ == end_) break;
      const char* start = it_;
      bool ok = true;
      if (at(kw_import)) {
        ast::ImportDecl import;
        import.offset = offset(it_);
        ok = run(kw_import) && run(string_literal, import.path);
        if (ok) file.imports.push_back(std::move(import));
      } else if (at(kw_param)) {
        ast::ParamDecl decl;
        ok = parse_param_decl(decl);
        if (ok) file.params.push_back(std::move(decl));
      } else if (at(kw_use)) {
        ast::UseDecl decl;
        ok = run(kw_use) && run(use_decl, decl);
        if (ok) file.uses.push_back(std::move(decl));
      } else if (at(kw_block)) {
        ast::BlockDecl decl;
        ok = parse_block(decl);
        if (ok) file.blocks.push_back(std::move(decl));
      } else if (at(kw_model)) {
        parse_model(file);
      } else if (at(kw_experiment)) {
        parse_experiment(file);
      } else {
        error(it_, "expected a declaration (import, param, use, block, model or experiment)");
        ok = false;
      }
      if (!ok) recover(start, {"import", "param", "use", "block", "model", "experiment"}, /*stop_at_close=*/false);
      skip_semicolons();
    }
    return file;
  }

  void seek(int offset) { it_ = begin_ + std::clamp<int>(offset, 0, static_cast<int>(end_ - begin_)); }

  bool parse_whole_expression(ast::Expr& out) {
    skip();
    if (!run(expr, out)) return false;
    skip();
    if (it_ != end_) {
      error(it_, "unexpected text after the expression");
      return false;
    }
    return true;
  }

 private:
  int offset(const char* p) const { return static_cast<int>(p - begin_); }
  void error(const char* where, std::string message) { diags_.error(source_, offset(where), std::move(message)); }

  void skip() { x3::parse(it_, end_, *skipper); }
  void skip_semicolons() {
    skip();
    while (it_ != end_ && *it_ == ';') {
      ++it_;
      skip();
    }
  }

  template <typename P>
  bool at(const P& p) const {
    const char* i = it_;
    try {
      return x3::phrase_parse(i, end_, x3::with<begin_tag>(begin_)[p], skipper);
    } catch (const NestingTooDeep&) {
      return false;  // the parse that follows reports it
    }
  }
  bool at_char(char c) {
    skip();
    return it_ != end_ && *it_ == c;
  }

  // Runs one parser at the current position; on failure reports "expected ..." and returns false.
  template <typename P, typename A>
  bool run(const P& p, A& attr) {
    skip();
    const char* i = it_;
    try {
      if (x3::phrase_parse(i, end_, x3::with<begin_tag>(begin_)[p], skipper, attr)) {
        it_ = i;
        return true;
      }
      error(it_, "expected " + x3::what(p));
    } catch (const NestingTooDeep& e) {
      error(e.where, "expression nested deeper than " + std::to_string(kMaxNesting) + " levels");
      return false;
    } catch (const x3::expectation_failure<Iterator>& e) {
      const char* where = e.where();
      if (e.which() == "'\"'") {  // a string runs to the end of its line
        error(where, "unterminated string");
        return false;
      }
      x3::parse(where, end_, *skipper);  // point at the offending token, not the space before it
      std::string found;
      if (where == end_) {
        found = "end of file";
      } else {
        const char* w = where;
        auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'; };
        if (word(*w)) {
          while (w != end_ && w - where < 24 && word(*w)) ++w;
        } else {
          ++w;
        }
        found = "'" + std::string(where, w) + "'";
      }
      error(where, "expected " + e.which() + ", found " + found);
    }
    return false;
  }
  template <typename P>
  bool run(const P& p) {
    x3::unused_type unused;
    return run(p, unused);
  }

  bool parse_param_decl(ast::ParamDecl& decl) {
    skip();
    decl.offset = offset(it_);
    return run(kw_param) && run(param_defs, decl.params);
  }

  bool parse_block(ast::BlockDecl& decl) {
    skip();
    decl.offset = offset(it_);
    if (!run(kw_block) || !run(identifier, decl.name) || !run(lit('(')) || !run(names, decl.params) || !run(lit(')')))
      return false;
    if (at_char('=')) return run(lit('=')) && run(expr, decl.result);
    if (!run(lit('{'))) return false;
    while (true) {
      skip_semicolons();
      if (at(kw_return)) break;
      if (it_ == end_ || *it_ == '}') {
        error(it_, "expected 'return' ending block '" + decl.name + "'");
        return false;
      }
      ast::Assign a;
      if (!run(assign, a)) return false;
      decl.body.push_back(std::move(a));
    }
    if (!run(kw_return) || !run(expr, decl.result)) return false;
    skip_semicolons();
    return run(lit('}'));
  }

  // The items of a body whose '{' has been read, up to and including its '}'. `parse_item` reads
  // one item and returns false after reporting a syntax error; the parser then skips to the next
  // line starting with one of `words` (or `name =`) and goes on, so one pass reports several
  // errors. `commas`: items may also be separated by ','.
  template <class ParseItem>
  void parse_braced_items(const std::string& what, std::initializer_list<const char*> words, bool commas,
                          ParseItem parse_item) {
    while (true) {
      skip_semicolons();
      while (commas && it_ != end_ && *it_ == ',') {
        ++it_;
        skip_semicolons();
      }
      if (it_ == end_) {
        error(it_, "expected '}' closing " + what);
        return;
      }
      if (*it_ == '}') {
        ++it_;
        return;
      }
      const char* item_start = it_;
      if (!parse_item() && recover(item_start, words, /*stop_at_close=*/true) && it_ != end_ && *it_ == '}') {
        ++it_;
        return;
      }
    }
  }

  void parse_model(ast::File& file) {
    ast::Model model;
    skip();
    model.offset = offset(it_);
    const char* start = it_;
    if (!run(kw_model) || !run(identifier, model.name) || !run(lit('{'))) {
      recover(start, {"import", "param", "use", "block", "model", "experiment"}, false);
      return;
    }
    parse_braced_items("model '" + model.name + "'", {"param", "use", "block", "input", "output"}, /*commas=*/false, [&] {
      if (at(kw_param)) {
        ast::ParamDecl decl;
        if (!parse_param_decl(decl)) return false;
        model.items.emplace_back(std::move(decl));
      } else if (at(kw_use)) {
        ast::UseDecl decl;
        if (!run(kw_use) || !run(use_decl, decl)) return false;
        model.items.emplace_back(std::move(decl));
      } else if (at(kw_block)) {
        ast::BlockDecl decl;
        if (!parse_block(decl)) return false;
        model.items.emplace_back(std::move(decl));
      } else if (at(kw_input)) {
        ast::InputDecl decl;
        decl.offset = offset(it_);
        if (!run(kw_input) || !run(input_decl, decl)) return false;
        model.items.emplace_back(std::move(decl));
      } else if (at(kw_output)) {
        ast::OutputDecl decl;
        decl.offset = offset(it_);
        if (!run(kw_output) || !run(output_decl, decl)) return false;
        model.items.emplace_back(std::move(decl));
      } else {
        ast::Assign a;
        if (!run(assign, a)) return false;
        model.items.emplace_back(std::move(a));
      }
      return true;
    });
    file.models.push_back(std::move(model));
  }

  // Settings separated by ',', ';' or line breaks, up to a closing '}'.
  bool parse_settings(std::vector<ast::Setting>& out, const std::string& where) {
    while (true) {
      skip();
      while (it_ != end_ && (*it_ == ',' || *it_ == ';')) {
        ++it_;
        skip();
      }
      if (it_ == end_) {
        error(it_, "expected '}' closing " + where);
        return false;
      }
      if (*it_ == '}') {
        ++it_;
        return true;
      }
      ast::Setting s;
      const char* i = it_;
      if (x3::phrase_parse(i, end_, x3::with<begin_tag>(begin_)[&(setting_key >> (lit('=') | lit(':')))], skipper)) {
        if (!run(setting, s)) return false;
      } else {
        s.offset = offset(it_);
        if (!run(expr, s.value)) return false;
      }
      out.push_back(std::move(s));
    }
  }

  void parse_experiment(ast::File& file) {
    ast::Experiment exp;
    skip();
    exp.offset = offset(it_);
    const char* start = it_;
    const std::initializer_list<const char*> top_words = {"import", "param", "use", "block", "model", "experiment"};
    if (!run(kw_experiment) || !run(identifier, exp.name) || !run(lit('{'))) {
      recover(start, top_words, false);
      return;
    }
    parse_braced_items("experiment '" + exp.name + "'", {"model"}, /*commas=*/true, [&] {
      const char* i = it_;
      if (at(kw_model)) {
        ast::ModelRef ref;
        ref.offset = offset(it_);
        if (!run(kw_model) || !run(lit('=')) || !run(string_literal, ref.path)) return false;
        if (at(kw_with) && !(run(kw_with) && run(lit('{')) && parse_settings(ref.overrides, "the model overrides"))) return false;
        exp.models.push_back(std::move(ref));
      } else if (x3::phrase_parse(i, end_, x3::with<begin_tag>(begin_)[&(identifier >> '{')], skipper)) {
        ast::Section section;
        section.offset = offset(it_);
        if (!run(identifier, section.name) || !run(lit('{')) ||
            !parse_settings(section.settings, "section '" + section.name + "'"))
          return false;
        exp.sections.push_back(std::move(section));
      } else {
        ast::Setting setting_item;
        if (!run(setting, setting_item)) return false;
        exp.settings.push_back(std::move(setting_item));
      }
      return true;
    });
    file.experiments.push_back(std::move(exp));
  }

  // Skips from a failed declaration that began at `start` to the beginning of the next line that
  // starts with one of `words` (or with `name =` when stop_at_close, i.e. inside a model), at the
  // brace depth where the declaration began (braces only). With stop_at_close, a '}' that closes the enclosing
  // braces stops the skip (it_ left on it) and the function returns true.
  bool recover(const char* start, std::initializer_list<const char*> words, bool stop_at_close) {
    int depth = 0;
    const char* p = start;
    bool line_start = false;
    auto starts_decl = [&](const char* q) {
      while (q != end_ && (*q == ' ' || *q == '\t' || *q == '\r')) ++q;
      for (const char* w : words) {
        const size_t n = std::strlen(w);
        if (static_cast<size_t>(end_ - q) > n && std::equal(w, w + n, q) && !(std::isalnum(static_cast<unsigned char>(q[n])) || q[n] == '_'))
          return true;
      }
      if (stop_at_close) {  // an assignment "name ="
        const char* r = q;
        while (r != end_ && (std::isalnum(static_cast<unsigned char>(*r)) || *r == '_')) ++r;
        if (r != q && !std::isdigit(static_cast<unsigned char>(*q))) {
          while (r != end_ && (*r == ' ' || *r == '\t')) ++r;
          if (r != end_ && *r == '=' && (r + 1 == end_ || r[1] != '=')) return true;
        }
      }
      return false;
    };
    while (p != end_) {
      const char c = *p;
      if (line_start && depth <= 0 && p > it_ && starts_decl(p)) {
        it_ = p;
        return false;
      }
      line_start = false;
      if (c == '"') {  // skip a string on this line
        ++p;
        while (p != end_ && *p != '"' && *p != '\n') p += (*p == '\\' && p + 1 != end_) ? 2 : 1;
        if (p != end_ && *p == '"') ++p;
        continue;
      }
      if (c == '/' && p + 1 != end_ && p[1] == '/') {
        while (p != end_ && *p != '\n') ++p;
        continue;
      }
      // Only braces are counted: they delimit models and block bodies, while an unbalanced
      // parenthesis is usually the error being recovered from.
      if (c == '{') ++depth;
      if (c == '}') {
        if (depth == 0 && c == '}' && stop_at_close && p >= it_) {
          it_ = p;
          return true;
        }
        if (depth > 0) --depth;
      }
      if (c == '\n') line_start = true;
      ++p;
    }
    it_ = end_;
    return false;
  }

  const SourceFile& source_;
  Diagnostics& diags_;
  const char* begin_;
  const char* end_;
  const char* it_;
};

// Rejects input nested deeper than kMaxNesting brackets before the (recursive) grammar sees it.
bool check_nesting(const SourceFile& source, Diagnostics& diags) {
  const std::string& t = source.text();
  int depth = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (c == '"') {
      for (++i; i < t.size() && t[i] != '"' && t[i] != '\n'; ++i)
        if (t[i] == '\\') ++i;
      continue;
    }
    // Comments as the grammar's skipper sees them: a line comment ends at '\r' as well as '\n'
    // (x3::eol), and brackets inside a block comment do not count.
    if (c == '/' && i + 1 < t.size() && t[i + 1] == '/') {
      while (i < t.size() && t[i] != '\n' && t[i] != '\r') ++i;
      continue;
    }
    if (c == '/' && i + 1 < t.size() && t[i + 1] == '*') {
      const size_t close = t.find("*/", i + 2);
      if (close == std::string::npos) break;  // unterminated: the parser reports it
      i = close + 1;
      continue;
    }
    if (c == '(' || c == '[' || c == '{') {
      if (++depth > kMaxNesting) {
        diags.error(source, static_cast<int>(i), "brackets nested deeper than " + std::to_string(kMaxNesting) + " levels");
        return false;
      }
    } else if ((c == ')' || c == ']' || c == '}') && depth > 0) {
      --depth;
    } else if (c == '\0') {
      diags.error(source, static_cast<int>(i), "unexpected NUL character");
      return false;
    }
  }
  return true;
}

bool check_size(const SourceFile& source, Diagnostics& diags) {
  if (source.text().size() <= kMaxSourceBytes) return true;
  diags.error(source.loc(-1), "file is larger than " + std::to_string(kMaxSourceBytes) + " bytes");
  return false;
}

}  // namespace

ast::File parse_file(const SourceFile& source, Diagnostics& diagnostics) {
  if (!check_size(source, diagnostics) || !check_nesting(source, diagnostics)) return {};
  return Parser(source, diagnostics).parse_file();
}

bool parse_expression(const SourceFile& source, ast::Expr& out, Diagnostics& diagnostics, int start) {
  if (!check_size(source, diagnostics) || !check_nesting(source, diagnostics)) return false;
  Parser parser(source, diagnostics);
  parser.seek(start);
  return parser.parse_whole_expression(out);
}

}  // namespace attnlab::dsl
