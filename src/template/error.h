// Errors of the template language: a template that does not parse (at load
// time), one that fails while rendering, and raise_exception() from the
// template itself. All are InputError: bad input, never a crash.
#pragma once

#include "core/error.h"

namespace umi::tmpl {

class TemplateError : public InputError {
 public:
  using InputError::InputError;
};

}  // namespace umi::tmpl
