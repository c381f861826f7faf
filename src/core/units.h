// Human-readable byte counts, both ways.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace umi {

// 1536 -> "1.50 KiB"; exact bytes below 1 KiB.
std::string format_bytes(uint64_t bytes);

// "12GiB", "12G", "512 MiB", "1.5GB", "4096" -> bytes. Binary (KiB, MiB, GiB,
// TiB, and the bare K/M/G/T) and decimal (KB, MB, GB, TB) suffixes, case
// insensitive. nullopt on anything else or on overflow.
std::optional<uint64_t> parse_bytes(std::string_view text);

// "250ms", "30s", "5m", "1h", "90" (seconds), "0" -> seconds; nullopt on
// anything else (negative numbers included: callers give "-1" its meaning).
std::optional<double> parse_seconds(std::string_view text);

}  // namespace umi
