// The filters, tests, methods and global functions templates may call.
#pragma once

#include <string>
#include <unordered_map>

#include "template/value.h"

namespace umi::tmpl {

class Interpreter;

Value apply_filter(Interpreter& in, const std::string& name, const Value& input, Args& args, int line);
bool apply_test(Interpreter& in, const std::string& name, const Value& input, Args& args, int line);
// x.name: a dict key, or a bound method of str/dict; Undefined otherwise.
Value get_attribute(Interpreter& in, const Value& target, const std::string& name, int line);
// x[key]: list/str index (negative from the end), dict key; Undefined when absent.
Value get_item(Interpreter& in, const Value& target, const Value& key, int line);
Value slice(Interpreter& in, const Value& target, const Value& start, const Value& stop, const Value& step, int line);
// range, namespace, dict, raise_exception, strftime_now.
void add_globals(std::unordered_map<std::string, Value>& frame);

// Python semantics shared by operators and filters.
int64_t py_len(Interpreter& in, const Value& v, int line);
List iterate(Interpreter& in, const Value& v, int line);  // list items, dict keys, string characters

}  // namespace umi::tmpl
