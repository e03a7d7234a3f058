#include "verify/encoding.hpp"

#include <cctype>
#include <charconv>

#include <fmt/format.h>

namespace pi::verify {
namespace {

namespace json = boost::json;

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Recursive-descent parser for the subset of Python literal syntax that repr() of JSON-like data
// produces. Depth-limited so hostile input cannot exhaust the stack.
class PyParser {
 public:
  explicit PyParser(std::string_view s) : s_(s) {}

  json::value parse_document() {
    json::value v = value(0);
    ws();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw DecodeError(fmt::format("not a Python literal: {} at offset {}", what, i_));
  }
  void ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool word(std::string_view w) {
    if (s_.substr(i_, w.size()) == w) {
      std::size_t end = i_ + w.size();
      if (end < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[end])) || s_[end] == '_')) return false;
      i_ = end;
      return true;
    }
    return false;
  }

  json::value value(int depth) {
    if (depth > 64) fail("nesting too deep");
    ws();
    if (i_ >= s_.size()) fail("unexpected end");
    char c = s_[i_];
    if (c == '{') return dict(depth);
    if (c == '[' || c == '(') return list(depth, c == '[' ? ']' : ')');
    if (c == '\'' || c == '"') return json::value(string());
    if (word("True")) return json::value(true);
    if (word("False")) return json::value(false);
    if (word("None")) return json::value(nullptr);
    if (c == '-' || c == '+' || std::isdigit(static_cast<unsigned char>(c))) return number();
    fail(fmt::format("unexpected character '{}'", c));
  }

  json::value dict(int depth) {
    ++i_;
    json::object o;
    if (eat('}')) return o;
    for (;;) {
      ws();
      json::value k = value(depth + 1);
      std::string key;
      if (k.is_string())
        key = std::string(k.get_string());
      else
        key = json::serialize(k);  // int keys etc.
      if (!eat(':')) fail("expected ':'");
      o[key] = value(depth + 1);
      if (eat(',')) {
        if (eat('}')) return o;
        continue;
      }
      if (eat('}')) return o;
      fail("expected ',' or '}'");
    }
  }

  json::value list(int depth, char close) {
    ++i_;
    json::array a;
    if (eat(close)) return a;
    for (;;) {
      a.push_back(value(depth + 1));
      if (eat(',')) {
        if (eat(close)) return a;
        continue;
      }
      if (eat(close)) return a;
      fail("expected ',' or closing bracket");
    }
  }

  std::uint32_t hex_digits(int n) {
    if (i_ + static_cast<std::size_t>(n) > s_.size()) fail("truncated escape");
    std::uint32_t v = 0;
    for (int k = 0; k < n; ++k) {
      char h = s_[i_++];
      v <<= 4;
      if (h >= '0' && h <= '9')
        v |= static_cast<std::uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f')
        v |= static_cast<std::uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        v |= static_cast<std::uint32_t>(h - 'A' + 10);
      else
        fail("bad hex digit in escape");
    }
    return v;
  }

  std::string string() {
    char q = s_[i_++];
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      char c = s_[i_++];
      if (c == q) break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      char e = s_[i_++];
      switch (e) {
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case '0':
          out += '\0';
          break;
        case '\n':
          break;  // line continuation
        case 'x':
          append_utf8(out, hex_digits(2));
          break;
        case 'u':
          append_utf8(out, hex_digits(4));
          break;
        case 'U':
          append_utf8(out, hex_digits(8));
          break;
        default:
          fail(fmt::format("unknown escape '\\{}'", e));
      }
    }
    return out;
  }

  json::value number() {
    std::size_t start = i_;
    if (s_[i_] == '-' || s_[i_] == '+') ++i_;
    bool is_float = false;
    while (i_ < s_.size() &&
           (std::isdigit(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.' || s_[i_] == 'e' || s_[i_] == 'E' ||
            s_[i_] == '_' || ((s_[i_] == '-' || s_[i_] == '+') && (s_[i_ - 1] == 'e' || s_[i_ - 1] == 'E')))) {
      if (s_[i_] == '.' || s_[i_] == 'e' || s_[i_] == 'E') is_float = true;
      ++i_;
    }
    std::string t;
    for (char c : s_.substr(start, i_ - start))
      if (c != '_' && c != '+') t += c;
    if (t.empty() || t == "-") fail("bad number");
    if (!is_float) {
      std::int64_t v = 0;
      auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
      if (ec == std::errc() && p == t.data() + t.size()) return json::value(v);
      std::uint64_t u = 0;
      auto [p2, ec2] = std::from_chars(t.data(), t.data() + t.size(), u);
      if (ec2 == std::errc() && p2 == t.data() + t.size()) return json::value(u);
      fail("integer out of range");
    }
    try {
      return json::parse(t);
    } catch (const std::exception&) {
      fail("bad number");
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

}  // namespace

json::value parse_python_literal(std::string_view text) { return PyParser(text).parse_document(); }

Decoded decode_lenient(const json::value& v) {
  if (v.is_null()) return {v, "null"};
  if (!v.is_string()) return {v, "json"};
  std::string_view s = v.get_string();
  boost::system::error_code ec;
  json::value parsed = json::parse(s, ec);
  if (!ec) return {std::move(parsed), "json-string"};
  try {
    return {parse_python_literal(s), "python-literal-string"};
  } catch (const DecodeError& e) {
    throw DecodeError(fmt::format("neither JSON ({}) nor a Python literal ({})", ec.message(), e.what()));
  }
}

DecodedHex decode_hex_field(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  bool prefixed = text.size() >= 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
  if (text.empty() || (prefixed && text.size() == 2)) throw DecodeError("empty hex");
  auto b = from_hex(text);
  if (!b) throw DecodeError(fmt::format("not hex ({} characters; odd length or a non-hex digit)", text.size()));
  return {std::move(*b), prefixed ? "0x-hex" : "hex"};
}

}  // namespace pi::verify
