// `private-inference serve`: flags with environment fall-backs (names operators of vllm-proxy
// already use), TEE discovery, signing-key derivation, then the proxy.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "cli/commands.hpp"
#include "server/proxy.hpp"
#include "server/routes.hpp"
#include "server/sqlite_store.hpp"
#include "tee/dstack_client.hpp"
#include "tee/gpu_evidence.hpp"

namespace pi::cli {

namespace {

struct ServeFlags {
  std::string backend;
  std::string listen = "0.0.0.0:8000";
  std::string model;
  std::vector<std::string> tokens;
  std::string backend_api_key;
  std::string dstack_socket;
  long ttl = 1200;
  std::size_t capacity = 100000;
  std::size_t max_body = 10u << 20;
  long connect_timeout = 10;
  long backend_timeout = 600;
  long client_timeout = 60;
  double shutdown_grace = 30;
  unsigned threads = 0;
  std::vector<std::string> public_endpoints{"attestation", "models", "health", "version", "metrics"};
  std::size_t max_attestations = 16;
  std::size_t max_connections = 10000;
  std::size_t max_buffered = 128u << 20;
  std::string log_level = "info";
  std::string gpu_mode = "auto";
  std::string nvml_lib;
  std::string store;      // empty: sqlite under the state directory
  std::string state_dir;  // empty: kDefaultStateDir
};

constexpr const char* kDefaultStateDir = "/var/lib/private-inference";

// The signature store: --store as given; else sqlite:<state dir>/signatures.db. An explicit state
// directory that cannot be used is an error; the default one (not writable when not run as a
// service user, e.g. a developer's shell) falls back to memory with a warning.
std::optional<server::StoreSpec> choose_store(const ServeFlags& f) {
  if (!f.store.empty()) return server::parse_store_spec(f.store);
  if (const char* host = std::getenv("REDIS_HOST"); host != nullptr && *host != '\0') {  // vllm-proxy's variables
    server::StoreSpec s;
    s.kind = server::StoreSpec::Kind::Redis;
    s.redis.host = host;
    auto number = [](const char* name, long lo, long hi, long dflt) {
      const char* v = std::getenv(name);
      if (v == nullptr || *v == '\0') return dflt;
      char* end = nullptr;
      const long n = std::strtol(v, &end, 10);
      if (*end != '\0' || n < lo || n > hi) throw std::invalid_argument(std::string(name) + ": not a number in range");
      return n;
    };
    s.redis.port = static_cast<unsigned short>(number("REDIS_PORT", 1, 65535, 6379));
    s.redis.db = static_cast<int>(number("REDIS_DB", 0, 1 << 20, 0));
    if (const char* pw = std::getenv("REDIS_PASSWORD")) s.redis.password = pw;
    return s;
  }
  const bool is_default = f.state_dir.empty();
  const std::string dir = is_default ? kDefaultStateDir : f.state_dir;
  std::error_code ec;
  if (std::filesystem::create_directories(dir, ec)) {  // created here: only the proxy's user reads it
    std::error_code ignored;
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ignored);
  }
  if (ec || ::access(dir.c_str(), W_OK | X_OK) != 0) {
    const std::string why = ec ? ec.message() : std::strerror(errno);
    if (!is_default) {
      spdlog::error("--state-dir {}: not a writable directory: {}", dir, why);
      return std::nullopt;
    }
    spdlog::warn(
        "state directory {} is not writable ({}): signature records are kept in MEMORY and lost on restart; "
        "pass --state-dir DIR or --store sqlite:PATH to keep them",
        dir, why);
    return server::StoreSpec{};
  }
  return server::StoreSpec{server::StoreSpec::Kind::Sqlite, server::default_store_path(dir), {}};
}

// Identity: dstack-derived when a TEE agent is present (same paths as vllm-proxy, so a
// deployment keeps its signing addresses across restarts and across a switch to this proxy).
protocol::SigningIdentity derive_identity(const tee::DstackEndpoint& ep, const std::string& model) {
  const std::string base = model.empty() ? std::string("private-inference") : model;
  auto ecdsa_key = tee::get_key_blocking(ep, base + "/ecdsa-signing-key", "signing");
  auto ed_key = tee::get_key_blocking(ep, base + "/ed25519-signing-key", "signing");
  if (ecdsa_key.key.size() < 32 || ed_key.key.size() < 32)
    throw std::runtime_error("dstack GetKey returned a key shorter than 32 bytes");
  auto ecdsa = crypto::EthSigner::from_secret(ByteView(ecdsa_key.key.data(), 32));
  auto ed = crypto::Ed25519Signer::from_seed(ByteView(ed_key.key.data(), 32));
  if (!ecdsa || !ed) throw std::runtime_error("dstack GetKey returned an unusable key");
  return protocol::SigningIdentity(*ecdsa, std::move(*ed));
}

}  // namespace

Runner register_serve(CLI::App& app) {
  auto f = std::make_shared<ServeFlags>();
  auto* sub = app.add_subcommand("serve", "Run the attested signing proxy in front of an OpenAI-compatible engine");
  sub->add_option("--backend", f->backend, "Backend base URL, e.g. http://127.0.0.1:8001")->envname("VLLM_BASE_URL");
  sub->add_option("--listen", f->listen, "Address to listen on (host:port)")->envname("LISTEN")->capture_default_str();
  sub->add_option("--model", f->model, "Served model name (also names the dstack key paths)")->envname("MODEL_NAME");
  sub->add_option("--token", f->tokens, "Bearer token clients must present (repeatable; env: comma-separated)")
      ->envname("TOKEN")
      ->delimiter(',');
  sub->add_option("--backend-api-key", f->backend_api_key, "Bearer token sent to the backend")->envname("VLLM_API_KEY");
  sub->add_option("--dstack-socket", f->dstack_socket, "dstack guest agent socket (or http://host:port)");
  sub->add_option("--signature-ttl", f->ttl, "Seconds a signature stays retrievable")
      ->envname("CHAT_CACHE_EXPIRATION")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--signature-capacity", f->capacity, "Maximum signature records held (503 when full)")
      ->envname("SIGNATURE_CAPACITY")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option(
         "--store", f->store,
         "Where signature records are kept: sqlite:PATH (durable), redis://[[user]:password@]host[:port][/db] "
         "(shared by a fleet of replicas; also REDIS_HOST, REDIS_PORT, REDIS_PASSWORD, REDIS_DB as "
         "vllm-proxy reads them) or memory (lost on restart; tests). Default: sqlite:<state dir>/signatures.db")
      ->envname("PI_STORE");
  sub->add_option("--state-dir", f->state_dir,
                  std::string("Directory for the proxy's state (the signature store). Default: ") + kDefaultStateDir +
                      " (memory, with a warning, when not writable)")
      ->envname("PI_STATE_DIR");
  sub->add_option("--max-body-bytes", f->max_body, "Largest request body accepted (413 beyond)")
      ->envname("VLLM_PROXY_MAX_REQUEST_SIZE")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--connect-timeout", f->connect_timeout, "Seconds to connect to the backend")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--backend-timeout", f->backend_timeout, "Seconds the backend may stay silent mid-response")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--shutdown-grace", f->shutdown_grace,
                  "Seconds requests in flight may take to finish after SIGTERM/SIGINT (new connections are refused)")
      ->envname("PI_SHUTDOWN_GRACE")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  sub->add_option("--client-timeout", f->client_timeout, "Seconds to read a request / write to a stalled client")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--threads", f->threads, "Worker threads (0: one per core)")->envname("PI_THREADS");
  sub->add_option("--public", f->public_endpoints,
                  "Endpoint groups served without a token: attestation,models,health,version,metrics,signature")
      ->delimiter(',')
      ->envname("PI_PUBLIC_ENDPOINTS");
  sub->add_option("--max-concurrent-attestations", f->max_attestations, "Attestations in flight before 429")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--max-connections", f->max_connections,
                  "Client connections open at once; more are answered 503 + Retry-After and closed")
      ->envname("PI_MAX_CONNECTIONS")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--max-buffered-bytes", f->max_buffered,
                  "Request bytes (heads and bodies) held in memory across all connections; beyond: 503 + Retry-After")
      ->envname("PI_MAX_BUFFERED_BYTES")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--gpu-evidence", f->gpu_mode,
                  "GPU evidence via NVML: off | auto (collect when NVML loads) | required (no evidence → 503)")
      ->envname("GPU_EVIDENCE")
      ->check(CLI::IsMember({"off", "auto", "required"}))
      ->capture_default_str();
  sub->add_option("--nvml-lib", f->nvml_lib, "NVML library to dlopen (default libnvidia-ml.so.1)")->envname("NVML_LIB");
  sub->add_option("--log-level", f->log_level, "trace|debug|info|warn|error")
      ->envname("LOG_LEVEL")
      ->capture_default_str();

  return [f]() -> int {
    spdlog::set_level(spdlog::level::from_str(f->log_level));
    if (f->backend.empty()) {
      spdlog::error("no backend: pass --backend URL or set VLLM_BASE_URL");
      return 2;
    }
    server::ServerConfig cfg;
    cfg.backend = server::parse_backend_url(f->backend);
    cfg.listen = server::parse_listen(f->listen);
    cfg.model = f->model;
    for (auto& t : f->tokens)
      if (!t.empty()) cfg.tokens.push_back(t);
    cfg.backend_api_key = f->backend_api_key;
    cfg.signature_ttl = std::chrono::seconds(f->ttl);
    cfg.signature_capacity = f->capacity;
    cfg.max_body_bytes = f->max_body;
    cfg.connect_timeout = std::chrono::seconds(f->connect_timeout);
    cfg.backend_timeout = std::chrono::seconds(f->backend_timeout);
    cfg.client_timeout = std::chrono::seconds(f->client_timeout);
    cfg.shutdown_grace = std::chrono::milliseconds(static_cast<long long>(f->shutdown_grace * 1000));
    cfg.threads = f->threads;
    cfg.public_endpoints = {f->public_endpoints.begin(), f->public_endpoints.end()};
    cfg.max_concurrent_attestations = f->max_attestations;
    cfg.max_connections = f->max_connections;
    cfg.max_buffered_bytes = f->max_buffered;
    try {
      auto store = choose_store(*f);
      if (!store) return 2;
      cfg.store = std::move(*store);
    } catch (const std::invalid_argument& e) {
      spdlog::error("--store: {}", e.what());
      return 2;
    }
    const auto known_groups = server::route_groups();  // the route table names the groups
    for (const auto& p : cfg.public_endpoints) {
      if (!known_groups.contains(p)) {
        spdlog::error("--public: unknown endpoint group '{}'", p);
        return 2;
      }
    }

    server::TeeContext tee;
    const auto dstack = tee::discover_dstack(f->dstack_socket);
    std::optional<protocol::SigningIdentity> identity;
    if (dstack) {
      spdlog::info("TEE: dstack guest agent at {}", dstack->describe());
      tee.agent = tee::make_dstack_agent(*dstack);
      boost::asio::io_context ioc;
      tee::DstackClient dc(ioc.get_executor(), *dstack, std::chrono::seconds(30));
      auto fut = boost::asio::co_spawn(ioc, dc.version(), boost::asio::use_future);
      ioc.run();
      auto ver = fut.get();  // an unreachable agent is fatal: an operator asked for a TEE
      if (auto* s = ver.if_contains("simulated"); s && s->is_bool()) tee.simulated = s->get_bool();
      if (auto* v = ver.if_contains("version"); v && v->is_string()) tee.agent_version = std::string(v->get_string());
      ioc.restart();
      auto info_fut = boost::asio::co_spawn(ioc, dc.info(), boost::asio::use_future);
      ioc.run();
      const auto info = info_fut.get();
      if (auto* i = info.if_contains("instance_id"); i && i->is_string())
        tee.instance_id = std::string(i->get_string()).substr(0, server::kMaxInstanceIdBytes);
      spdlog::info("TEE instance id: {}", tee.instance_id.empty() ? "(none in Info)" : tee.instance_id);
      identity.emplace(derive_identity(*dstack, cfg.model));
      tee.keys_from_tee = true;
      if (tee.simulated)
        spdlog::warn(
            "the TEE agent is SIMULATED (dev-tee): attestation reports are labelled simulated and prove nothing");
    } else {
      spdlog::warn(
          "no dstack guest agent found (--dstack-socket, DSTACK_SIMULATOR_ENDPOINT, /var/run/dstack.sock, "
          "/var/run/dstack/dstack.sock): using RANDOM signing keys; attestation endpoints will answer 503");
      identity.emplace(protocol::SigningIdentity::random());
    }
    spdlog::info("signing addresses: ecdsa {} ed25519 {} ({})", identity->signing_address(protocol::SigningAlgo::Ecdsa),
                 identity->signing_address(protocol::SigningAlgo::Ed25519),
                 tee.keys_from_tee ? "dstack-derived" : "random");
    if (f->gpu_mode != "off") {
      tee::GpuEvidenceOptions o;
      o.library_path = f->nvml_lib;
      o.max_fresh = cfg.max_concurrent_attestations;
      auto nvml = std::make_shared<tee::GpuEvidenceCollector>(o);
      tee.gpu_required = f->gpu_mode == "required";
      if (!nvml->available()) {
        if (tee.gpu_required) {
          spdlog::error("--gpu-evidence required, but NVML is unusable: {}", nvml->load_error());
          return 2;
        }
        spdlog::warn("GPU evidence unavailable: {} (attestation reports say so in gpu_evidence_error)",
                     nvml->load_error());
      } else {
        spdlog::info("GPU evidence: NVML loaded{}", nvml->simulated() ? " — SIMULATED NVML (test PKI / replay)" : "");
      }
      tee.gpu = std::move(nvml);
    }
    if (cfg.tokens.empty()) spdlog::warn("no --token configured: inference and signature endpoints are open to anyone");
    std::optional<server::ProxyServer> proxy;
    try {
      proxy.emplace(std::move(cfg), std::move(*identity), std::move(tee));
    } catch (const server::StoreError& e) {
      spdlog::error("{}", e.what());
      return 2;
    }
    proxy->bind();
    proxy->run(true);
    return 0;
  };
}

}  // namespace pi::cli
