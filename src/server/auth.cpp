#include "server/auth.hpp"

#include <cctype>

namespace pi::server {

TokenAuth::TokenAuth(const std::vector<std::string>& tokens) {
  for (const auto& t : tokens)
    if (!t.empty()) digests_.push_back(crypto::sha256(std::string_view(t)));
}

std::optional<std::string> TokenAuth::authenticate(std::string_view header) const {
  if (!enabled()) return std::string();
  constexpr std::string_view kBearer = "Bearer ";
  if (header.size() <= kBearer.size()) return std::nullopt;
  for (std::size_t i = 0; i < kBearer.size(); ++i)  // scheme is case-insensitive
    if (std::tolower(static_cast<unsigned char>(header[i])) != std::tolower(static_cast<unsigned char>(kBearer[i])))
      return std::nullopt;
  const auto presented = crypto::sha256(header.substr(kBearer.size()));
  bool match = false;
  const crypto::Digest32* which = nullptr;
  for (const auto& d : digests_) {  // no early exit: time does not depend on which token matched
    bool eq = ct_equal(d, presented);
    match |= eq;
    if (eq) which = &d;
  }
  if (!match) return std::nullopt;
  return to_hex(ByteView(which->data(), 8));
}

}  // namespace pi::server
