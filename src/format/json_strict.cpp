#include "format/json_strict.h"

#include <fstream>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/error.h"
#include "format/mapped_file.h"

namespace umi {

using nlohmann::json;

namespace {
template <class Json>
Json parse_strict(std::string_view text, std::string_view file, std::string_view field, int max_depth) {
  std::vector<std::unordered_set<std::string>> keys;  // one set per open object
  auto callback = [&](int depth, typename Json::parse_event_t event, Json& parsed) -> bool {
    if (depth > max_depth)
      throw FormatError(file, field, "JSON nested deeper than " + std::to_string(max_depth) + " levels");
    switch (event) {
      case Json::parse_event_t::object_start: keys.emplace_back(); break;
      case Json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case Json::parse_event_t::key: {
        const std::string& k = parsed.template get_ref<const std::string&>();
        if (!keys.empty() && !keys.back().insert(k).second)
          throw FormatError(file, field, "duplicate key \"" + k.substr(0, 200) + "\"");
        break;
      }
      default: break;
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999
    throw FormatError(file, field, std::string("invalid JSON: ") + e.what());
  }
}
}  // namespace

json parse_json_strict(std::string_view text, std::string_view file, std::string_view field, int max_depth) {
  return parse_strict<json>(text, file, field, max_depth);
}

nlohmann::ordered_json parse_ordered_json_strict(std::string_view text, std::string_view file, std::string_view field,
                                                 int max_depth) {
  return parse_strict<nlohmann::ordered_json>(text, file, field, max_depth);
}

json read_json_file(const std::string& path, uint64_t max_bytes) {
  return parse_json_strict(read_small_file(path, max_bytes), path, "json");
}

nlohmann::ordered_json read_ordered_json_file(const std::string& path, uint64_t max_bytes) {
  return parse_ordered_json_strict(read_small_file(path, max_bytes), path, "json");
}

}  // namespace umi
