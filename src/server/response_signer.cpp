#include "server/response_signer.hpp"

#include "crypto/random.hpp"
#include "protocol/wire.hpp"

namespace pi::server {

std::string record_key(std::string_view owner, std::string_view id) {
  std::string k;
  k.reserve(owner.size() + 1 + id.size());
  k.append(owner).push_back('\x1f');
  k.append(id);
  return k;
}

std::optional<ResponseSigner> ResponseSigner::begin(SignatureStore& store, const protocol::SigningIdentity& identity,
                                                    std::string owner, std::string_view request_body) {
  auto r = store.reserve();
  if (!r) return std::nullopt;
  return ResponseSigner(std::move(*r), identity, std::move(owner), crypto::sha256(request_body));
}

SignResult ResponseSigner::commit(const crypto::Digest32& response_hash, const std::string& id) {
  auto rec = identity_->sign(request_hash_, response_hash);
  if (reservation_.commit(record_key(owner_, id), rec)) return {SignOutcome::Signed, id};
  return {SignOutcome::Collision, id};
}

SignResult ResponseSigner::sign_body(std::string_view body) {
  // An empty "id" names nothing a client could fetch: such an answer gets a generated id, as one without.
  auto id = protocol::response_id(body).value_or("");
  if (id.empty()) id = "pi-" + to_hex(crypto::random_bytes(12));
  return commit(crypto::sha256(body), id);
}

SignResult ResponseSigner::finish_stream() {
  const auto response_hash = hasher_.finish();
  if (scanner_.signable()) return commit(response_hash, scanner_.id());
  if (scanner_.id().empty() && scanner_.completed()) return {SignOutcome::NoId, {}};
  return {SignOutcome::Incomplete, {}};
}

}  // namespace pi::server
