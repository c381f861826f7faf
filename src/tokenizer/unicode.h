// UTF-8 and Unicode helpers the tokenizers share.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace umi::unicode {

// Appends the UTF-8 encoding of a code point.
void append_utf8(std::string& out, char32_t cp);

// Length of the valid UTF-8 sequence starting at s[i], or 0 if the bytes there
// are not one (truncated, overlong, surrogate, > U+10FFFF).
size_t valid_sequence_length(std::string_view s, size_t i);

bool is_valid_utf8(std::string_view s);

// Invalid sequences replaced by U+FFFD, one per maximal invalid subpart (the
// Unicode "substitution of maximal subparts" rule, which Rust's
// String::from_utf8_lossy and Python's errors="replace" follow).
std::string to_valid_utf8(std::string_view s);

enum class NormalForm { nfc, nfd, nfkc, nfkd };
// Normalizes valid UTF-8; invalid byte runs pass through unchanged.
std::string normalize(std::string_view s, NormalForm form);

// GPT-2's byte-level alphabet: every byte maps to a printable code point, so
// any byte string becomes a Unicode string and back without loss.
char32_t byte_to_unicode(uint8_t b);
// -1 when the code point is not in the alphabet.
int unicode_to_byte(char32_t cp);

// Decodes one code point at s[i] (which must start a valid sequence).
char32_t decode_at(std::string_view s, size_t i, size_t* length);

std::string lowercase(std::string_view s);
std::string uppercase(std::string_view s);

}  // namespace umi::unicode
