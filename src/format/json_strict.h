// JSON from untrusted files, parsed strictly: valid UTF-8 only, no duplicate
// keys in any object (nlohmann::json would silently keep the last one, so a
// file could say two things at once), bounded nesting depth.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

namespace umi {

// Throws FormatError("<file>", field, reason).
nlohmann::json parse_json_strict(std::string_view text, std::string_view file, std::string_view field,
                                 int max_depth = 64);

// The same, keeping object keys in the order the text gives them (request
// bodies, template inputs: what tojson prints must keep that order).
nlohmann::ordered_json parse_ordered_json_strict(std::string_view text, std::string_view file, std::string_view field,
                                                 int max_depth = 64);

// Reads a whole (small) file and parses it; max_bytes bounds what is read.
nlohmann::json read_json_file(const std::string& path, uint64_t max_bytes = 64ull << 20);
nlohmann::ordered_json read_ordered_json_file(const std::string& path, uint64_t max_bytes = 64ull << 20);

}  // namespace umi
