#include "core/units.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace umi {

std::string format_bytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  int unit = -1;
  while (v >= 1024.0 && unit < 4) {
    v /= 1024.0;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", v, kUnits[unit]);
  return buf;
}

std::optional<uint64_t> parse_bytes(std::string_view text) {
  auto trim = [](std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
  };
  text = trim(text);
  size_t num_end = 0;
  while (num_end < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[num_end])) || text[num_end] == '.'))
    ++num_end;
  if (num_end == 0) return std::nullopt;
  std::string number(text.substr(0, num_end));
  std::string suffix;
  for (char c : trim(text.substr(num_end))) suffix += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));

  double multiplier = 1;
  if (suffix.empty() || suffix == "b") multiplier = 1;
  else if (suffix == "k" || suffix == "kib") multiplier = 1024.0;
  else if (suffix == "m" || suffix == "mib") multiplier = 1024.0 * 1024;
  else if (suffix == "g" || suffix == "gib") multiplier = 1024.0 * 1024 * 1024;
  else if (suffix == "t" || suffix == "tib") multiplier = 1024.0 * 1024 * 1024 * 1024;
  else if (suffix == "kb") multiplier = 1e3;
  else if (suffix == "mb") multiplier = 1e6;
  else if (suffix == "gb") multiplier = 1e9;
  else if (suffix == "tb") multiplier = 1e12;
  else return std::nullopt;

  if (number.find('.') == std::string::npos) {
    uint64_t whole = 0;
    auto [p, ec] = std::from_chars(number.data(), number.data() + number.size(), whole);
    if (ec != std::errc() || p != number.data() + number.size()) return std::nullopt;
    uint64_t m = static_cast<uint64_t>(multiplier);
    uint64_t out = 0;
    if (__builtin_mul_overflow(whole, m, &out)) return std::nullopt;
    return out;
  }
  char* end = nullptr;
  double v = std::strtod(number.c_str(), &end);
  if (end != number.c_str() + number.size() || !std::isfinite(v)) return std::nullopt;
  double bytes = v * multiplier;
  if (bytes < 0 || bytes >= 18446744073709549568.0) return std::nullopt;
  return static_cast<uint64_t>(bytes);
}

std::optional<double> parse_seconds(std::string_view text) {
  size_t num_end = 0;
  while (num_end < text.size() && (std::isdigit(static_cast<unsigned char>(text[num_end])) || text[num_end] == '.')) ++num_end;
  if (num_end == 0) return std::nullopt;
  const std::string number(text.substr(0, num_end));
  const std::string_view suffix = text.substr(num_end);
  double unit = 0;
  if (suffix.empty() || suffix == "s") unit = 1;
  else if (suffix == "ms") unit = 1e-3;
  else if (suffix == "m") unit = 60;
  else if (suffix == "h") unit = 3600;
  else return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(number.c_str(), &end);
  if (end != number.c_str() + number.size() || !std::isfinite(v) || v * unit > 1e9) return std::nullopt;
  return v * unit;
}

}  // namespace umi
