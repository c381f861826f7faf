// Error types shared by every layer.
//
// The contract: anything caused by input umi does not control (a model file, a
// request, a command line) is an InputError whose what() is one line naming the
// source, the field and the reason. The CLI maps InputError to exit code 2 and
// the server to a 4xx. Resource exhaustion is OutOfMemory. Everything else is a
// bug and surfaces as a plain Error.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace umi {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class InputError : public Error {
 public:
  using Error::Error;
};

// A malformed or unsupported file: "<file>: <field>: <reason>".
class FormatError : public InputError {
 public:
  FormatError(std::string_view file, std::string_view field, std::string_view reason);
};

// An allocation the memory budget cannot hold. Callers that can wait (the
// scheduler) use the try_ variants instead of catching this.
class OutOfMemory : public Error {
 public:
  using Error::Error;
};

}  // namespace umi
