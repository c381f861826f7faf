#include "core/error.h"

namespace umi {

namespace {
std::string join(std::string_view file, std::string_view field, std::string_view reason) {
  std::string s;
  s.reserve(file.size() + field.size() + reason.size() + 4);
  s.append(file);
  if (!field.empty()) s.append(": ").append(field);
  s.append(": ").append(reason);
  // One line, always: a reason may quote untrusted text.
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}
}  // namespace

FormatError::FormatError(std::string_view file, std::string_view field, std::string_view reason)
    : InputError(join(file, field, reason)) {}

}  // namespace umi
