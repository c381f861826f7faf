// Turns template source into tokens, applying Jinja's whitespace rules as
// transformers configures them: trim_blocks and lstrip_blocks on, `-`
// modifiers, comments dropped, \r\n in text normalized to \n, and one
// trailing newline at the end of the template removed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace umi::tmpl {

struct Token {
  enum class Kind { text, var_begin, var_end, block_begin, block_end, name, string, integer, floating, op, end };
  Kind kind;
  std::string text;
  int line;
};

// Throws TemplateError with the line on unterminated tags or strings.
std::vector<Token> lex(std::string_view source);

}  // namespace umi::tmpl
