#include "protocol/json_check.hpp"

#include <cstdint>
#include <vector>

namespace pi::protocol {

namespace {

class Checker {
 public:
  explicit Checker(std::string_view t) : s_(t) {}

  std::optional<JsonSyntaxError> run() {
    skip_ws();
    if (!value()) return err_;
    skip_ws();
    if (i_ != s_.size()) {
      fail("unexpected data after the JSON value");
      return err_;
    }
    return std::nullopt;
  }

 private:
  // One value; containers are walked iteratively, `stack_` remembering for each open level
  // whether it is an object (true) or an array (false).
  bool value() {
    for (;;) {
      if (i_ >= s_.size()) return fail("unexpected end of the document");
      const char c = s_[i_];
      if (c == '{' || c == '[') {
        const bool obj = c == '{';
        ++i_;
        skip_ws();
        const char close = obj ? '}' : ']';
        if (i_ < s_.size() && s_[i_] == close) {
          ++i_;  // empty container: a complete value
        } else {
          stack_.push_back(obj);
          if (obj && !key()) return false;
          skip_ws();
          continue;  // parse the first element / member value
        }
      } else if (c == '"') {
        if (!string()) return false;
      } else if (c == 't') {
        if (!literal("true")) return false;
      } else if (c == 'f') {
        if (!literal("false")) return false;
      } else if (c == 'n') {
        if (!literal("null")) return false;
      } else if (c == '-' || (c >= '0' && c <= '9')) {
        if (!number()) return false;
      } else {
        return fail("unexpected character");
      }
      // A value is complete: close levels or move to the next element.
      for (;;) {
        if (stack_.empty()) return true;
        skip_ws();
        if (i_ >= s_.size()) return fail("unexpected end of the document");
        const bool obj = stack_.back();
        if (s_[i_] == ',') {
          ++i_;
          skip_ws();
          if (obj && !key()) return false;
          skip_ws();
          break;  // next value
        }
        if (s_[i_] == (obj ? '}' : ']')) {
          ++i_;
          stack_.pop_back();
          continue;
        }
        return fail(obj ? "expected ',' or '}'" : "expected ',' or ']'");
      }
    }
  }

  // "key" ws ':' — positioned at the key.
  bool key() {
    if (i_ >= s_.size() || s_[i_] != '"') return fail("expected a string key");
    if (!string()) return false;
    skip_ws();
    if (i_ >= s_.size() || s_[i_] != ':') return fail("expected ':'");
    ++i_;
    skip_ws();
    return true;
  }

  bool literal(std::string_view lit) {
    if (s_.substr(i_, lit.size()) != lit) return fail("invalid literal");
    i_ += lit.size();
    return true;
  }

  bool digits() {
    const std::size_t start = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    return i_ > start;
  }

  bool number() {
    if (s_[i_] == '-') ++i_;
    if (i_ >= s_.size()) return fail("invalid number");
    if (s_[i_] == '0') {
      ++i_;
    } else if (!digits()) {
      return fail("invalid number");
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (!digits()) return fail("invalid number: digits expected after '.'");
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (!digits()) return fail("invalid number: exponent digits expected");
    }
    return true;
  }

  static bool hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

  bool string() {
    ++i_;  // opening quote
    while (i_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c == '\\') {
        if (++i_ >= s_.size()) break;
        const char e = s_[i_];
        if (e == 'u') {
          if (i_ + 4 >= s_.size()) return fail("truncated \\u escape");
          for (int k = 1; k <= 4; ++k)
            if (!hex(s_[i_ + k])) return fail("invalid \\u escape");
          i_ += 5;
          continue;
        }
        if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r' && e != 't')
          return fail("invalid escape");
        ++i_;
        continue;
      }
      if (c < 0x20) return fail("control character in a string");
      if (c < 0x80) {
        ++i_;
        continue;
      }
      if (!utf8()) return false;
    }
    return fail("unterminated string");
  }

  // One multi-byte UTF-8 sequence at i_ (RFC 3629: no overlong forms, no surrogates, ≤ U+10FFFF).
  bool utf8() {
    const auto b0 = static_cast<unsigned char>(s_[i_]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      n = 1;
      cp = b0 & 0x1Fu;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      n = 2;
      cp = b0 & 0x0Fu;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      n = 3;
      cp = b0 & 0x07u;
    } else {
      return fail("invalid UTF-8");
    }
    if (i_ + n >= s_.size()) return fail("invalid UTF-8");
    for (std::size_t k = 1; k <= n; ++k) {
      const auto b = static_cast<unsigned char>(s_[i_ + k]);
      if ((b & 0xC0u) != 0x80u) return fail("invalid UTF-8");
      cp = (cp << 6) | (b & 0x3Fu);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
      return fail("invalid UTF-8");
    i_ += n + 1;
    return true;
  }

  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }

  bool fail(const char* what) {
    err_ = JsonSyntaxError{i_, what};
    return false;
  }

  std::string_view s_;
  std::size_t i_ = 0;
  std::vector<bool> stack_;
  JsonSyntaxError err_;
};

}  // namespace

std::optional<JsonSyntaxError> check_json(std::string_view text) { return Checker(text).run(); }

std::optional<JsonSyntaxError> check_json_object(std::string_view text) {
  if (auto e = check_json(text)) return e;
  std::size_t i = 0;
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) ++i;
  if (text[i] != '{') return JsonSyntaxError{i, "the top-level value must be a JSON object"};
  return std::nullopt;
}

}  // namespace pi::protocol
