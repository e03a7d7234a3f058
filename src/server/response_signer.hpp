#pragma once
// The response signer: sees the exact bytes going out to the client and nothing else (no socket).
// It holds a signature-store reservation for the whole exchange (RAII: destroyed unsigned, the slot
// goes back), hashes the request once and the response incrementally, and decides — by the rules of
// src/protocol — whether and under which id the answer is signed. Signing ends with the store's
// commit, which is awaited (asynchronously: the event loop keeps running while a durable store
// writes): when sign_body / finish_stream return, the record is stored, so the caller may then
// send the last bytes of the answer.
#include <optional>
#include <string>
#include <string_view>

#include "crypto/hash.hpp"
#include "protocol/signing.hpp"
#include "protocol/sse.hpp"
#include "server/http.hpp"
#include "server/signature_store.hpp"

namespace pi::server {

enum class SignOutcome {
  Signed,       // stored under id
  Collision,    // the id already had a record; the existing one was kept
  Incomplete,   // stream without completion, with an error event, or cut
  NoId,         // completed stream that named no id
  NotSignable,  // not a 2xx answer
  StoreFailed   // the store could not write the record: not signed
};

struct SignResult {
  SignOutcome outcome = SignOutcome::NotSignable;
  std::string id;  // the record's id (Signed / Collision)
};

class ResponseSigner {
 public:
  // Reserves a slot and hashes the request body. nullopt: the store is full.
  // `instance_id` (the serving TEE instance, recorded with each record) must outlive the signer.
  static std::optional<ResponseSigner> begin(SignatureStore& store, const std::string& instance_id, std::string owner,
                                             std::string_view request_body);

  // A whole (non-streamed) 2xx answer: signs its exact bytes under the body's "id" (or a generated
  // "pi-…" id when it has none).
  awaitable<SignResult> sign_body(std::string_view body);

  // Streamed answers: every byte relayed to the client, in order.
  void feed(std::string_view bytes) {
    hasher_.update(bytes);
    scanner_.feed(bytes);
  }
  // The stream has reached its completion event: bytes after it are held until finish_stream().
  bool stream_completed() const { return scanner_.completed(); }
  // The stream ended cleanly (no transport error): signs it if it is signable.
  awaitable<SignResult> finish_stream();

  const crypto::Digest32& request_hash() const { return request_hash_; }

 private:
  ResponseSigner(SignatureStore::Reservation r, const std::string& instance_id, std::string owner,
                 const crypto::Digest32& request_hash)
      : reservation_(std::move(r)), instance_id_(&instance_id), owner_(std::move(owner)), request_hash_(request_hash) {}
  awaitable<SignResult> commit(const crypto::Digest32& response_hash, std::string id);

  SignatureStore::Reservation reservation_;
  const std::string* instance_id_;
  std::string owner_;
  crypto::Digest32 request_hash_;
  crypto::Sha256 hasher_;
  protocol::SseScanner scanner_;
};

// The store key of a record: records are namespaced by the token (owner tag) that made the request.
std::string record_key(std::string_view owner, std::string_view id);

}  // namespace pi::server
