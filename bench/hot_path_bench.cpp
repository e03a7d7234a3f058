// Micro-benchmarks of the proxy's hot path (issue 6): what one signed answer costs in CPU.
//   * hashing a stream as it passes (incremental SHA-256 + the SSE scanner, per event and per
//     whole 256-token vLLM-framed stream), and hashing a non-streaming body;
//   * signing: ECDSA secp256k1 personal_sign, Ed25519, and SigningIdentity::sign (both, what the
//     proxy does once per answer);
//   * the signature store: reserve+commit, and get (hit and miss), single- and multi-threaded;
//   * rendering the signature JSON served by GET /v1/signature/{id}.
#include <benchmark/benchmark.h>

#include <boost/json.hpp>
#include <string>
#include <vector>

#include "crypto/ed25519.hpp"
#include "crypto/eth.hpp"
#include "crypto/hash.hpp"
#include "protocol/signing.hpp"
#include "protocol/sse.hpp"
#include "protocol/wire.hpp"
#include "server/signature_store.hpp"

namespace {

using namespace pi;

// One vLLM chat.completion.chunk event, as the proxy sees it on the wire (~190 bytes).
std::string vllm_event(int i) {
  return "data: {\"id\":\"chatcmpl-8d1f0c2a9b7e4d3c\",\"object\":\"chat.completion.chunk\",\"created\":1764000000,"
         "\"model\":\"synthetic\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" tok" +
         std::to_string(i) + "\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";
}

std::vector<std::string> vllm_stream(int tokens) {
  std::vector<std::string> ev;
  ev.reserve(static_cast<std::size_t>(tokens) + 2);
  for (int i = 0; i < tokens; ++i) ev.push_back(vllm_event(i));
  ev.push_back(
      "data: {\"id\":\"chatcmpl-8d1f0c2a9b7e4d3c\",\"object\":\"chat.completion.chunk\",\"created\":1764000000,"
      "\"model\":\"synthetic\",\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"total_tokens\":264,"
      "\"completion_tokens\":256}}\n\n");
  ev.push_back("data: [DONE]\n\n");
  return ev;
}

// Per event: what the relay loop does with each chunk it forwards (hash + scan).
void BM_StreamEvent_HashAndScan(benchmark::State& state) {
  const auto ev = vllm_event(7);
  crypto::Sha256 h;
  protocol::SseScanner scanner;
  scanner.feed(vllm_event(0));  // the id is already known, as after the first event
  for (auto _ : state) {
    h.update(std::string_view(ev));
    scanner.feed(ev);
  }
  benchmark::DoNotOptimize(scanner.completed());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * ev.size()));
}
BENCHMARK(BM_StreamEvent_HashAndScan);

// A whole 256-token stream: new hasher and scanner, every event, finish.
void BM_Stream256_HashAndScan(benchmark::State& state) {
  const auto events = vllm_stream(256);
  std::size_t bytes = 0;
  for (const auto& e : events) bytes += e.size();
  for (auto _ : state) {
    crypto::Sha256 h;
    protocol::SseScanner scanner;
    for (const auto& e : events) {
      h.update(std::string_view(e));
      scanner.feed(e);
    }
    auto d = h.finish();
    benchmark::DoNotOptimize(d);
    if (!scanner.signable()) state.SkipWithError("stream not signable");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.counters["stream_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_Stream256_HashAndScan);

// Non-streaming: one-shot SHA-256 of a body of the given size.
void BM_Sha256_Body(benchmark::State& state) {
  const std::string body(static_cast<std::size_t>(state.range(0)), 'x');
  for (auto _ : state) {
    auto d = crypto::sha256(std::string_view(body));
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_Sha256_Body)->Arg(512)->Arg(16 << 10)->Arg(1 << 20);

void BM_Sign_Ecdsa_PersonalSign(benchmark::State& state) {
  const auto signer = crypto::EthSigner::random();
  const std::string text = protocol::signed_text(std::string(64, 'a'), std::string(64, 'b'));
  for (auto _ : state) {
    auto sig = signer.personal_sign(text);
    benchmark::DoNotOptimize(sig);
  }
}
BENCHMARK(BM_Sign_Ecdsa_PersonalSign);

void BM_Sign_Ed25519(benchmark::State& state) {
  const auto signer = crypto::Ed25519Signer::random();
  const std::string text = protocol::signed_text(std::string(64, 'a'), std::string(64, 'b'));
  for (auto _ : state) {
    auto sig = signer.sign(as_bytes(text));
    benchmark::DoNotOptimize(sig);
  }
}
BENCHMARK(BM_Sign_Ed25519);

// What the proxy does once per completed answer: both signatures over the signed text.
void BM_SigningIdentity_Sign(benchmark::State& state) {
  const auto id = protocol::SigningIdentity::random();
  const auto rq = crypto::sha256(std::string_view("request"));
  const auto rs = crypto::sha256(std::string_view("response"));
  for (auto _ : state) {
    auto rec = id.sign(rq, rs);
    benchmark::DoNotOptimize(rec);
  }
}
BENCHMARK(BM_SigningIdentity_Sign);

server::StoredRecord sample_record() {
  return {crypto::sha256(std::string_view("request")), crypto::sha256(std::string_view("response")),
          "0123456789abcdef0123456789abcdef01234567"};
}

std::string key_for(std::uint64_t i) {
  return "owner\x1f"
         "chatcmpl-" +
         std::to_string(i);
}

// Reserve a slot and commit a record under a fresh id (as the proxy does per signed answer).
// Threads share one store, as the proxy's worker threads do.
void BM_Store_ReserveCommit(benchmark::State& state) {
  // One store for all runs (function-local static: initialised once, thread-safely); a fixed
  // iteration count keeps it at a few hundred thousand records.
  static server::SignatureStore* store = new server::MemorySignatureStore(1u << 30, std::chrono::seconds(1200));
  const auto rec = sample_record();
  std::uint64_t i = static_cast<std::uint64_t>(state.thread_index()) << 40;
  for (auto _ : state) {
    auto r = store->reserve();
    if (!r) state.SkipWithError("store full");
    benchmark::DoNotOptimize(r->commit(key_for(i++), rec));
  }
}
BENCHMARK(BM_Store_ReserveCommit)->Iterations(100000)->Threads(1)->Threads(2)->UseRealTime();

// Fetch from a store holding 100k records (the default capacity), hits and misses.
void BM_Store_Get(benchmark::State& state) {
  constexpr std::uint64_t kRecords = 100000;
  static server::SignatureStore* store = []() -> server::SignatureStore* {
    auto* s = new server::MemorySignatureStore(kRecords, std::chrono::seconds(1200));
    const auto rec = sample_record();
    for (std::uint64_t i = 0; i < kRecords; ++i) s->reserve()->commit(key_for(i), rec);
    return s;
  }();
  const bool hit = state.range(0) != 0;
  std::uint64_t i = static_cast<std::uint64_t>(state.thread_index()) * 7919;
  for (auto _ : state) {
    auto r = store->get(key_for(hit ? (i++ % kRecords) : (kRecords + i++)));
    if (hit != r.has_value()) state.SkipWithError("unexpected lookup result");
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_Store_Get)->Arg(1)->Arg(0)->ArgName("hit")->Threads(1)->Threads(2)->UseRealTime();

// Rendering GET /v1/signature/{id}'s JSON from a stored record.
void BM_SignatureResponse_Json(benchmark::State& state) {
  const auto id = protocol::SigningIdentity::random();
  const auto rec = id.sign(crypto::sha256(std::string_view("request")), crypto::sha256(std::string_view("response")));
  for (auto _ : state) {
    auto s = boost::json::serialize(protocol::signature_response(rec, id, protocol::SigningAlgo::Ecdsa));
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_SignatureResponse_Json);

}  // namespace
