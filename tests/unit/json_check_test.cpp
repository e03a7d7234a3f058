// The request-body JSON check: RFC 8259 without a depth limit or recursion, cross-checked against
// Boost.JSON (an implementation we did not write) on every input Boost can judge (depth ≤ 32).
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <random>
#include <string>

#include "protocol/json_check.hpp"

using pi::protocol::check_json;
using pi::protocol::check_json_object;

namespace {
bool boost_accepts(const std::string& s) {
  boost::system::error_code ec;
  (void)boost::json::parse(s, ec);
  return !ec;
}
}  // namespace

TEST(JsonCheck, AcceptsValidDocuments) {
  for (const char* s : {"{}", " {\"a\": [1, -0.5e+3, true, false, null, \"x\\u00e9\\n\"]} ", "[]", "0", "-0", "1E9",
                        "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "{\"a\":{\"b\":{}}}", "[[],[[]],{}]"})
    EXPECT_FALSE(check_json(s)) << s;
}

TEST(JsonCheck, RefusesInvalidDocuments) {
  for (const char* s : {"",
                        " ",
                        "{",
                        "}",
                        "[1,]",
                        "{\"a\":}",
                        "{\"a\" 1}",
                        "{a:1}",
                        "01",
                        "1.",
                        ".5",
                        "-",
                        "1e",
                        "NaN",
                        "Infinity",
                        "tru",
                        "nul",
                        "\"abc",
                        "\"\\x\"",
                        "\"\\u12g4\"",
                        "{} {}",
                        "[1 2]",
                        "{\"a\":1,}",
                        "// c\n{}",
                        "\"\x01\"",
                        "\"\xc0\xaf\"",
                        "\"\xed\xa0\x80\"",
                        "\"\xf4\x90\x80\x80\"",
                        "\"\xe2\x82\"",
                        "{\"a\":1]",
                        "[1}"})
    EXPECT_TRUE(check_json(s)) << s;
}

TEST(JsonCheck, TopLevelMustBeAnObjectForRequests) {
  EXPECT_FALSE(check_json_object(" {\"model\":\"m\"}"));
  EXPECT_TRUE(check_json_object("[]"));
  EXPECT_TRUE(check_json_object("\"s\""));
  EXPECT_TRUE(check_json_object("{\"a\":"));
}

TEST(JsonCheck, DeepNestingNeedsNoStack) {
  // 4 MiB of nesting: far deeper than any stack could recurse, and than Boost.JSON's default 32.
  const std::size_t depth = 2u << 20;
  std::string deep = std::string(depth, '[') + std::string(depth, ']');
  EXPECT_FALSE(check_json(deep));
  EXPECT_TRUE(check_json(deep.substr(0, deep.size() - 1)));
  std::string objs;
  for (int i = 0; i < 100000; ++i) objs += "{\"k\":";
  objs += "1" + std::string(100000, '}');
  EXPECT_FALSE(check_json_object(objs));
}

TEST(JsonCheck, AgreesWithBoostJsonOnMutatedDocuments) {
  const std::string seeds[] = {
      R"({"model":"m","messages":[{"role":"user","content":"hi \u00e9"}],"temperature":0.7,"stream":true})",
      R"({"a":[1,2,{"b":null,"c":[true,false,-1.5e-3]}],"d":"\"\\\/\b\f\n\r\t"})", "[0,-0,1e5,1E+5,1e-5]",
      "{\"\xc3\xa9\":\"\xe2\x82\xac\"}"};
  const std::string alphabet = "{}[],:\"\\ 0123456789.-+eEtrufalsn\x01\x7f\xc3\xa9\xff";
  std::mt19937 rng(20261203);
  int compared = 0;
  for (const auto& seed : seeds) {
    for (int n = 0; n < 4000; ++n) {
      std::string s = seed;
      const int edits = 1 + static_cast<int>(rng() % 3);
      for (int e = 0; e < edits && !s.empty(); ++e) {
        const std::size_t pos = rng() % s.size();
        switch (rng() % 3) {
          case 0:
            s.erase(pos, 1);
            break;
          case 1:
            s.insert(pos, 1, alphabet[rng() % alphabet.size()]);
            break;
          default:
            s[pos] = alphabet[rng() % alphabet.size()];
        }
      }
      if (s.find("\\u") != std::string::npos) continue;  // lone-surrogate escapes: the libraries differ
      EXPECT_EQ(!check_json(s).has_value(), boost_accepts(s)) << "input: " << s;
      ++compared;
    }
  }
  EXPECT_GT(compared, 10000);
}
