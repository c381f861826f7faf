#include "template/lexer.h"

#include <cctype>

#include "template/error.h"
#include "tokenizer/unicode.h"

namespace umi::tmpl {

namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string normalize_newlines(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      out += '\n';
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {}

  std::vector<Token> run() {
    while (pos_ < src_.size()) {
      size_t at = next_tag(pos_);
      std::string text(src_.substr(pos_, at - pos_));
      count_lines(pos_, at);
      if (at == src_.size()) {
        emit_text(std::move(text));
        break;
      }
      char kind = src_[at + 1];  // '{', '%' or '#'
      char mod = at + 2 < src_.size() ? src_[at + 2] : 0;
      if (mod == '-') {
        while (!text.empty() && is_ws(text.back())) text.pop_back();
      } else if (kind != '{' && mod != '+') {
        lstrip_block(text, pos_);
      }
      emit_text(std::move(text));
      size_t inner = at + 2 + ((mod == '-' || mod == '+') ? 1 : 0);
      count_lines(at, inner);
      if (kind == '#') {
        size_t close = src_.find("#}", inner);
        if (close == std::string_view::npos) fail("unterminated comment");
        bool strip = close > inner && src_[close - 1] == '-';
        count_lines(inner, close + 2);  // the comment's own lines
        pos_ = close + 2;
        after_tag(strip, true);
        continue;
      }
      out_.push_back({kind == '{' ? Token::Kind::var_begin : Token::Kind::block_begin, "", line_});
      lex_inside(inner, kind == '{' ? '}' : '%');
    }
    out_.push_back({Token::Kind::end, "", line_});
    return std::move(out_);
  }

 private:
  size_t next_tag(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i)
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    return src_.size();
  }

  // lstrip_blocks: spaces and tabs between the start of a line and a block
  // tag are removed.
  void lstrip_block(std::string& text, size_t text_start) const {
    size_t nl = text.find_last_of('\n');
    size_t tail = nl == std::string::npos ? 0 : nl + 1;
    bool line_start = nl != std::string::npos || text_start == 0 || src_[text_start - 1] == '\n';
    if (!line_start) return;
    for (size_t k = tail; k < text.size(); ++k)
      if (text[k] != ' ' && text[k] != '\t') return;
    text.erase(tail);
  }

  void after_tag(bool strip, bool is_block) {
    if (strip) {
      while (pos_ < src_.size() && is_ws(src_[pos_])) {
        if (src_[pos_] == '\n') ++line_;
        ++pos_;
      }
    } else if (is_block) {  // trim_blocks: the first newline after a block tag goes
      if (pos_ < src_.size() && src_[pos_] == '\n') ++pos_, ++line_;
      else if (pos_ + 1 < src_.size() && src_[pos_] == '\r' && src_[pos_ + 1] == '\n') pos_ += 2, ++line_;
    }
  }

  void emit_text(std::string text) {
    if (!text.empty()) out_.push_back({Token::Kind::text, normalize_newlines(text), line_});
  }

  void count_lines(size_t from, size_t to) {
    for (size_t i = from; i < to && i < src_.size(); ++i)
      if (src_[i] == '\n') ++line_;
  }

  void lex_inside(size_t i, char closer) {
    const std::string_view ops[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                    "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"};
    int depth = 0;  // brackets: a '}' inside {...} is not the closing tag
    while (true) {
      while (i < src_.size() && is_ws(src_[i])) {
        if (src_[i] == '\n') ++line_;
        ++i;
      }
      if (i >= src_.size()) fail(closer == '}' ? "unterminated {{ ... }}" : "unterminated {% ... %}");
      // Closing delimiter, with an optional '-'.
      if (depth == 0) {
        bool dash = src_[i] == '-' && src_.compare(i + 1, 2, std::string{closer, '}'}) == 0;
        if (dash || src_.compare(i, 2, std::string{closer, '}'}) == 0) {
          out_.push_back({closer == '}' ? Token::Kind::var_end : Token::Kind::block_end, "", line_});
          pos_ = i + (dash ? 3 : 2);
          after_tag(dash, closer == '%');
          return;
        }
      }
      char c = src_[i];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t b = i;
        while (i < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[i])) || src_[i] == '_')) ++i;
        out_.push_back({Token::Kind::name, std::string(src_.substr(b, i - b)), line_});
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t b = i;
        bool is_float = false;
        while (i < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[i])) || src_[i] == '_')) ++i;
        if (i + 1 < src_.size() && src_[i] == '.' && std::isdigit(static_cast<unsigned char>(src_[i + 1]))) {
          is_float = true;
          ++i;
          while (i < src_.size() && std::isdigit(static_cast<unsigned char>(src_[i]))) ++i;
        }
        if (i < src_.size() && (src_[i] == 'e' || src_[i] == 'E')) {
          size_t k = i + 1;
          if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
          if (k < src_.size() && std::isdigit(static_cast<unsigned char>(src_[k]))) {
            is_float = true;
            i = k;
            while (i < src_.size() && std::isdigit(static_cast<unsigned char>(src_[i]))) ++i;
          }
        }
        std::string num;
        for (size_t k = b; k < i; ++k)
          if (src_[k] != '_') num += src_[k];
        out_.push_back({is_float ? Token::Kind::floating : Token::Kind::integer, num, line_});
      } else if (c == '\'' || c == '"') {
        i = lex_string(i);
      } else {
        bool matched = false;
        for (std::string_view op : ops)
          if (src_.compare(i, op.size(), op) == 0) {
            if (op == "(" || op == "[" || op == "{") ++depth;
            if ((op == ")" || op == "]" || op == "}") && depth > 0) --depth;
            out_.push_back({Token::Kind::op, std::string(op), line_});
            i += op.size();
            matched = true;
            break;
          }
        if (!matched) fail(std::string("unexpected character '") + c + "'");
      }
    }
  }

  // A Python-style string literal with backslash escapes.
  size_t lex_string(size_t i) {
    char q = src_[i++];
    std::string s;
    while (true) {
      if (i >= src_.size()) fail("unterminated string literal");
      char c = src_[i++];
      if (c == q) break;
      if (c == '\n') ++line_;
      if (c != '\\') {
        s += c;
        continue;
      }
      if (i >= src_.size()) fail("unterminated string literal");
      char e = src_[i++];
      auto hex = [&](size_t n) {
        if (i + n > src_.size()) fail("truncated escape in string literal");
        uint32_t v = 0;
        for (size_t k = 0; k < n; ++k) {
          char h = src_[i + k];
          int d = std::isdigit(static_cast<unsigned char>(h)) ? h - '0'
                  : (h >= 'a' && h <= 'f')                     ? h - 'a' + 10
                  : (h >= 'A' && h <= 'F')                     ? h - 'A' + 10
                                                               : -1;
          if (d < 0) fail("bad hex escape in string literal");
          v = v * 16 + static_cast<uint32_t>(d);
        }
        i += n;
        return v;
      };
      switch (e) {
        case 'n': s += '\n'; break;
        case 't': s += '\t'; break;
        case 'r': s += '\r'; break;
        case '0': s += '\0'; break;
        case 'b': s += '\b'; break;
        case 'f': s += '\f'; break;
        case 'v': s += '\v'; break;
        case 'a': s += '\a'; break;
        case '\\': s += '\\'; break;
        case '\'': s += '\''; break;
        case '"': s += '"'; break;
        case '\n': ++line_; break;  // line continuation
        case 'x': unicode::append_utf8(s, hex(2)); break;
        case 'u': unicode::append_utf8(s, hex(4)); break;
        case 'U': {
          uint32_t v = hex(8);
          if (v > 0x10FFFF) fail("escape beyond U+10FFFF");
          unicode::append_utf8(s, v);
          break;
        }
        default: s += '\\'; s += e;  // Python keeps unknown escapes as written
      }
    }
    out_.push_back({Token::Kind::string, std::move(s), line_});
    return i;
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw TemplateError("template line " + std::to_string(line_) + ": " + why);
  }

  std::string_view src_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> out_;
};

}  // namespace

std::vector<Token> lex(std::string_view source) {
  // keep_trailing_newline=False: Jinja drops one newline at the end of the source.
  if (source.size() >= 2 && source.substr(source.size() - 2) == "\r\n") source.remove_suffix(2);
  else if (!source.empty() && (source.back() == '\n' || source.back() == '\r')) source.remove_suffix(1);
  return Lexer(source).run();
}

}  // namespace umi::tmpl
