#include "server/response_signer.hpp"

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/post.hpp>

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

std::optional<ResponseSigner> ResponseSigner::begin(SignatureStore& store, const std::string& instance_id,
                                                    std::string owner, std::string_view request_body) {
  auto r = store.reserve();
  if (!r) return std::nullopt;
  return ResponseSigner(std::move(*r), instance_id, std::move(owner), crypto::sha256(request_body));
}

namespace {

// Hands the record to the store and resumes the coroutine on its own executor when the store has
// completed the commit (the SQLite store completes on its writer thread).
template <class Token>
auto async_commit(SignatureStore::Reservation& r, std::string key, const StoredRecord& rec, Token&& token) {
  return net::async_initiate<Token, void(CommitResult)>(
      [&r, &rec, k = std::move(key)](auto handler) mutable {
        auto ex = net::prefer(net::get_associated_executor(handler), net::execution::outstanding_work.tracked);
        r.commit_async(std::move(k), rec, [h = std::move(handler), ex](CommitResult res) mutable {
          net::post(ex, [h = std::move(h), res]() mutable { std::move(h)(res); });
        });
      },
      token);
}

}  // namespace

awaitable<SignResult> ResponseSigner::commit(const crypto::Digest32& response_hash, std::string id) {
  const StoredRecord rec{request_hash_, response_hash, *instance_id_};
  switch (co_await async_commit(reservation_, record_key(owner_, id), rec, net::use_awaitable)) {
    case CommitResult::Stored:
      co_return SignResult{SignOutcome::Signed, std::move(id)};
    case CommitResult::Collision:
      co_return SignResult{SignOutcome::Collision, std::move(id)};
    case CommitResult::Failed:
      break;
  }
  co_return SignResult{SignOutcome::StoreFailed, std::move(id)};
}

awaitable<SignResult> ResponseSigner::sign_body(std::string_view body) {
  // An empty "id" names nothing a client could fetch: such an answer gets a generated id, as one without.
  auto id = protocol::response_id(body).value_or("");
  if (id.empty()) id = "pi-" + to_hex(crypto::random_bytes(12));
  co_return co_await commit(crypto::sha256(body), std::move(id));
}

awaitable<SignResult> ResponseSigner::finish_stream() {
  const auto response_hash = hasher_.finish();
  if (scanner_.signable()) co_return co_await commit(response_hash, scanner_.id());
  if (scanner_.id().empty() && scanner_.completed()) co_return SignResult{SignOutcome::NoId, {}};
  co_return SignResult{SignOutcome::Incomplete, {}};
}

}  // namespace pi::server
