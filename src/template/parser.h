// Parses template tokens into a syntax tree (Jinja's grammar and operator
// precedence). Throws TemplateError with the line for anything malformed.
#pragma once

#include <string_view>

#include "template/ast.h"

namespace umi::tmpl {

Template parse(std::string_view source);

}  // namespace umi::tmpl
