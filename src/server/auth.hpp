#pragma once
// Bearer-token authentication. Tokens are kept only as SHA-256 digests and compared in
// constant time; the digest prefix also names the "owner" namespace of signature records.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/hash.hpp"

namespace pi::server {

class TokenAuth {
 public:
  explicit TokenAuth(const std::vector<std::string>& tokens);
  bool enabled() const { return !digests_.empty(); }
  // Value of the Authorization header → owner tag (16 hex chars) if the token is valid.
  // With authentication disabled every caller is the anonymous owner "".
  std::optional<std::string> authenticate(std::string_view authorization_header) const;

 private:
  std::vector<crypto::Digest32> digests_;
};

}  // namespace pi::server
