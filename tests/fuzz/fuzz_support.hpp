#pragma once
// Small helpers shared by the libFuzzer harnesses: reading a recorded fixture (tests/fixtures, path compiled in)
// and viewing the fuzz input as text.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pi::fuzz {

// The bytes of tests/fixtures/<name>; throws (the harness cannot run without it).
inline std::string read_fixture(const std::string& name) {
  std::ifstream f(std::string(PI_FIXTURES_DIR) + "/" + name, std::ios::binary);
  if (!f) throw std::runtime_error("missing fixture " + name);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Unix seconds inside the validity window of collateral_fmspc20a06f_2025-09.json (tests/fixtures/tdx/README.md).
inline constexpr std::int64_t kCollateralNow = 1756900000;

}  // namespace pi::fuzz
