// GpuEvidenceCollector under load, with the simulated NVML loaded through the real dlopen path: NVML calls never
// run concurrently, the pool bounds fresh-nonce collections (Busy beyond it), same-nonce requests share one
// collection, timeouts, the background-refreshed no-nonce cache, metrics.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "crypto/random.hpp"
#include "nvml_sim_support.hpp"
#include "tee/gpu_evidence.hpp"
#include "verify/gpu.hpp"

namespace {

using pi::tee::GpuEvidenceCollector;
using pi::tee::GpuEvidenceOptions;
using pi::tee::GpuEvidenceResult;
using pi::tee::GpuEvidenceStatus;

using pi::testsupport::random_nonce;
using pi::testsupport::sim_lib_path;

// The simulator's own counters, read through dlsym on the same (already loaded) library.
struct SimProbe {
  void* h = nullptr;
  int (*max_concurrent)() = nullptr;
  unsigned long long (*calls)() = nullptr;
  void (*reset)() = nullptr;
  int (*active)() = nullptr;
  int (*init_count)() = nullptr;
  explicit SimProbe(const std::string& path) {
    h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!h) return;
    max_concurrent = reinterpret_cast<int (*)()>(dlsym(h, "pi_nvml_sim_max_concurrent_calls"));
    calls = reinterpret_cast<unsigned long long (*)()>(dlsym(h, "pi_nvml_sim_call_count"));
    reset = reinterpret_cast<void (*)()>(dlsym(h, "pi_nvml_sim_reset_counters"));
    active = reinterpret_cast<int (*)()>(dlsym(h, "pi_nvml_sim_active_calls"));
    init_count = reinterpret_cast<int (*)()>(dlsym(h, "pi_nvml_sim_init_count"));
  }
  ~SimProbe() {
    if (h) dlclose(h);
  }
  bool ok() const { return max_concurrent && calls && reset && active && init_count; }
};

class GpuEvidenceCollectorTest : public pi::testsupport::SimNvmlTest {
 protected:
  GpuEvidenceOptions opts() const {
    GpuEvidenceOptions o;
    o.library_path = sim_lib_path();
    return o;
  }
};

TEST_F(GpuEvidenceCollectorTest, TwoHundredConcurrentRequestsNeverRunNvmlConcurrentlyNorExceedThePool) {
  setenv("PI_NVML_SIM_DELAY_MS", "40", 1);
  setenv("PI_NVML_SIM_GPUS", "2", 1);
  SimProbe probe(sim_lib_path());
  ASSERT_TRUE(probe.ok());
  auto o = opts();
  o.max_fresh = 4;
  o.timeout = std::chrono::seconds(30);
  // Declared before the collector so that it outlives the collector's NVML thread: that thread's last post()
  // to it may still be signalling the io_context when run() has already returned here (TSan).
  boost::asio::io_context io(4);
  GpuEvidenceCollector col(o);
  ASSERT_TRUE(col.available()) << col.load_error();
  probe.reset();

  // 100 requests for one nonce (must share), 100 requests with fresh nonces (most must be rejected: pool of 4).
  const auto shared_nonce = random_nonce();
  std::vector<pi::protocol::Nonce> nonces;
  nonces.reserve(200);
  for (int i = 0; i < 100; ++i) nonces.push_back(shared_nonce);
  for (int i = 0; i < 100; ++i) nonces.push_back(random_nonce());
  std::vector<GpuEvidenceResult> results(nonces.size());
  for (std::size_t i = 0; i < nonces.size(); ++i) {
    boost::asio::co_spawn(
        io,
        [&col, &results, &nonces, i]() -> boost::asio::awaitable<void> {
          results[i] = co_await col.collect(nonces[i]);
        },
        boost::asio::detached);
  }
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) threads.emplace_back([&io] { io.run(); });
  for (auto& t : threads) t.join();

  std::size_t ok = 0, busy = 0, shared = 0;
  for (std::size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    ASSERT_TRUE(r.status == GpuEvidenceStatus::Ok || r.status == GpuEvidenceStatus::Busy)
        << pi::tee::to_string(r.status) << ": " << r.error;
    if (r.ok()) {
      ++ok;
      EXPECT_EQ(r.nonce_hex, pi::to_hex(nonces[i]));  // never someone else's evidence
      EXPECT_EQ(r.gpu_evidence.size(), 2u);
      if (r.shared) ++shared;
    } else {
      ++busy;
      EXPECT_EQ(r.retry_after_s, o.retry_after_s);
    }
  }
  auto s = col.stats();
  EXPECT_EQ(probe.max_concurrent(), 1) << "NVML was called concurrently";
  EXPECT_GT(probe.calls(), 0u);
  EXPECT_LE(s.max_fresh_inflight, 4u);
  EXPECT_GT(busy, 0u);
  EXPECT_EQ(s.rejections, busy);
  EXPECT_EQ(s.shared, shared);
  EXPECT_GT(shared, 0u);
  EXPECT_EQ(ok + busy, 200u);
  EXPECT_EQ(s.requests, 200u);
  // Each collection served at least one request; sharing means fewer collections than successful answers.
  EXPECT_LT(s.collections, ok);
  EXPECT_EQ(s.timeouts, 0u);

  // A shared result verifies against the test root and carries the shared nonce.
  for (std::size_t i = 0; i < 100; ++i) {
    if (!results[i].ok()) continue;
    pi::verify::GpuOptions vo;
    vo.extra_root_pems.push_back(test_root());
    pi::verify::Report rep;
    pi::verify::check_gpu_evidence(boost::json::value(results[i].nvidia_payload), pi::to_hex(shared_nonce), vo, rep);
    EXPECT_TRUE(rep.ok());
    break;
  }
}

TEST_F(GpuEvidenceCollectorTest, BlockingCallersFromManyThreadsAreSerialisedToo) {
  setenv("PI_NVML_SIM_DELAY_MS", "5", 1);
  SimProbe probe(sim_lib_path());
  ASSERT_TRUE(probe.ok());
  auto o = opts();
  o.max_fresh = 3;
  GpuEvidenceCollector col(o);
  ASSERT_TRUE(col.available()) << col.load_error();
  probe.reset();
  std::vector<std::thread> threads;
  std::mutex mu;
  std::size_t ok = 0, busy = 0;
  threads.reserve(32);
  for (int t = 0; t < 32; ++t) {
    threads.emplace_back([&] {
      for (int k = 0; k < 3; ++k) {
        auto n = random_nonce();
        auto r = col.collect_blocking(n);
        std::lock_guard lk(mu);
        if (r.ok()) {
          ++ok;
          EXPECT_EQ(r.nonce_hex, pi::to_hex(n));
        } else {
          EXPECT_EQ(r.status, GpuEvidenceStatus::Busy) << r.error;
          ++busy;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(probe.max_concurrent(), 1);
  EXPECT_GT(ok, 0u);
  EXPECT_EQ(ok + busy, 96u);
  EXPECT_LE(col.stats().max_fresh_inflight, 3u);
}

TEST_F(GpuEvidenceCollectorTest, SlowNvmlTimesOutWithoutEvidenceAndRecovers) {
  setenv("PI_NVML_SIM_DELAY_MS", "600", 1);
  auto o = opts();
  o.timeout = std::chrono::milliseconds(150);
  GpuEvidenceCollector col(o);
  ASSERT_TRUE(col.available()) << col.load_error();
  auto r = col.collect_blocking(random_nonce());
  EXPECT_EQ(r.status, GpuEvidenceStatus::Timeout);
  EXPECT_NE(r.error.find("150 ms"), std::string::npos) << r.error;
  boost::json::object report;
  r.apply_to(report);
  EXPECT_TRUE(report.at("nvidia_payload").is_null());
  EXPECT_EQ(col.stats().timeouts, 1u);

  // Async path times out the same way, on the caller's executor.
  boost::asio::io_context io;
  GpuEvidenceResult ar;
  boost::asio::co_spawn(
      io, [&]() -> boost::asio::awaitable<void> { ar = co_await col.collect(random_nonce()); }, boost::asio::detached);
  io.run();
  EXPECT_EQ(ar.status, GpuEvidenceStatus::Timeout);
  EXPECT_EQ(col.stats().timeouts, 2u);
}

TEST_F(GpuEvidenceCollectorTest, NoNonceReportsAreCachedAndRefreshedInTheBackground) {
  auto o = opts();
  o.cache_ttl = std::chrono::milliseconds(1000);
  GpuEvidenceCollector col(o);
  ASSERT_TRUE(col.available()) << col.load_error();
  auto first = col.collect_cached_blocking();
  ASSERT_TRUE(first.ok()) << first.error;
  EXPECT_EQ(first.nonce_hex.size(), 64u);
  auto second = col.collect_cached_blocking();
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second.cached);
  EXPECT_EQ(second.nonce_hex, first.nonce_hex);
  EXPECT_EQ(second.nvidia_payload, first.nvidia_payload);
  EXPECT_GE(col.stats().cache_hits, 1u);
  // The cached evidence is bound to its own nonce and verifies with it.
  pi::verify::GpuOptions vo;
  vo.extra_root_pems.push_back(test_root());
  pi::verify::Report rep;
  pi::verify::check_gpu_evidence(boost::json::value(second.nvidia_payload), second.nonce_hex, vo, rep);
  EXPECT_TRUE(rep.ok());

  // Without any request, the NVML thread refreshes it after cache_ttl.
  const auto before = col.stats().cache_collections;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (col.stats().cache_collections == before && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GT(col.stats().cache_collections, before);
  auto third = col.collect_cached_blocking();
  ASSERT_TRUE(third.ok());
  EXPECT_NE(third.nonce_hex, first.nonce_hex);
}

TEST_F(GpuEvidenceCollectorTest, CcOffIsAnErrorNeverEvidence) {
  setenv("PI_NVML_SIM_CC", "0", 1);
  GpuEvidenceCollector col(opts());
  ASSERT_TRUE(col.available()) << col.load_error();
  auto r = col.collect_blocking(random_nonce());
  EXPECT_EQ(r.status, GpuEvidenceStatus::Error);
  EXPECT_EQ(r.error_kind, pi::tee::NvmlErrorKind::CcOff);
  EXPECT_TRUE(r.nvidia_payload.empty());
  EXPECT_TRUE(r.gpu_evidence.empty());
  boost::json::object report;
  r.apply_to(report);
  EXPECT_TRUE(report.at("gpu_evidence").is_null());
  EXPECT_NE(report.at("gpu_evidence_error").as_string().find("confidential computing is not enabled"),
            std::string::npos);
  EXPECT_EQ(col.stats().failures, 1u);
}

TEST_F(GpuEvidenceCollectorTest, ApplyToMarksSimulatedEvidenceAndMetricsRender) {
  GpuEvidenceCollector col(opts());
  ASSERT_TRUE(col.available()) << col.load_error();
  EXPECT_TRUE(col.simulated());
  auto n = random_nonce();
  auto r = col.collect_blocking(n);
  ASSERT_TRUE(r.ok()) << r.error;
  boost::json::object report;
  r.apply_to(report);
  EXPECT_TRUE(report.at("nvidia_payload").is_string());
  EXPECT_TRUE(report.at("gpu_evidence").is_array());
  EXPECT_TRUE(report.at("gpu_evidence_error").is_null());
  EXPECT_TRUE(report.at("gpu_evidence_simulated").as_bool());
  EXPECT_NE(report.at("gpu_evidence_notice").as_string().find("SIMULATED"), std::string::npos);
  EXPECT_EQ(report.at("gpu_evidence_info").as_object().at("gpus").as_array().size(), 1u);

  std::string m;
  col.render_metrics(m);
  for (const char* name :
       {"pi_gpu_evidence_available 1", "pi_gpu_evidence_simulated 1",
        "pi_gpu_evidence_collections_total{purpose=\"fresh\"} 1", "pi_gpu_evidence_failures_total 0",
        "pi_gpu_evidence_timeouts_total 0", "pi_gpu_evidence_cache_hits_total 0", "pi_gpu_evidence_rejections_total 0",
        "pi_gpu_evidence_collection_seconds_count 1", "pi_gpu_evidence_request_seconds_bucket{le=\"+Inf\"} 1"}) {
    EXPECT_NE(m.find(name), std::string::npos) << name << "\n" << m;
  }

  GpuEvidenceOptions bad;
  bad.library_path = "/nonexistent/libnvidia-ml.so.1";
  GpuEvidenceCollector none(bad);
  std::string m2;
  none.render_metrics(m2);
  EXPECT_NE(m2.find("pi_gpu_evidence_available 0"), std::string::npos);
}

TEST_F(GpuEvidenceCollectorTest, ShutdownCompletesWaitingRequestsOnTheirExecutor) {
  setenv("PI_NVML_SIM_DELAY_MS", "300", 1);
  GpuEvidenceCollector col(opts());
  ASSERT_TRUE(col.available()) << col.load_error();
  boost::asio::io_context io;
  auto guard = boost::asio::make_work_guard(io);
  std::vector<GpuEvidenceResult> results(3);
  for (std::size_t i = 0; i < results.size(); ++i) {
    boost::asio::co_spawn(
        io,
        [&col, &results, i]() -> boost::asio::awaitable<void> { results[i] = co_await col.collect(random_nonce()); },
        boost::asio::detached);
  }
  std::thread t([&io] { io.run(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the first collection is running, two are queued
  col.shutdown();
  guard.reset();
  t.join();
  EXPECT_TRUE(results[0].ok()) << results[0].error;  // the running collection finishes
  for (std::size_t i = 1; i < results.size(); ++i) {
    EXPECT_EQ(results[i].status, GpuEvidenceStatus::Error);
    EXPECT_NE(results[i].error.find("shutting down"), std::string::npos) << results[i].error;
  }
  auto after = col.collect_blocking(random_nonce());
  EXPECT_EQ(after.status, GpuEvidenceStatus::Error);
}

TEST_F(GpuEvidenceCollectorTest, HungNvmlAtShutdownIsAbandonedWithoutTouchingDestroyedExecutors) {
  setenv("PI_NVML_SIM_DELAY_MS", "500", 1);
  auto col = std::make_unique<GpuEvidenceCollector>(opts());
  ASSERT_TRUE(col->available()) << col->load_error();
  bool completed = false;
  {
    boost::asio::io_context io;
    boost::asio::co_spawn(
        io,
        [&col, &completed]() -> boost::asio::awaitable<void> {
          (void)co_await col->collect(random_nonce());
          completed = true;
        },
        boost::asio::detached);
    std::thread t([&io] { io.run_for(std::chrono::milliseconds(100)); });
    t.join();
    col->shutdown(std::chrono::milliseconds(20));  // NVML still busy: abandoned
  }                                                // the io_context is destroyed while the NVML call is still running
  col.reset();
  // Let the abandoned call return (it must not complete the request on the destroyed io_context) and its thread
  // shut NVML down, so that no later test sees its calls.
  SimProbe probe(sim_lib_path());
  ASSERT_TRUE(probe.ok());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while ((probe.init_count() != 0 || probe.active() != 0) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(probe.init_count(), 0);
  EXPECT_FALSE(completed);
}

TEST(GpuEvidenceBase64, MatchesRfc4648Vectors) {
  auto b = [](std::string_view s) { return pi::base64_encode(pi::as_bytes(s)); };
  EXPECT_EQ(b(""), "");
  EXPECT_EQ(b("f"), "Zg==");
  EXPECT_EQ(b("fo"), "Zm8=");
  EXPECT_EQ(b("foo"), "Zm9v");
  EXPECT_EQ(b("foob"), "Zm9vYg==");
  EXPECT_EQ(b("fooba"), "Zm9vYmE=");
  EXPECT_EQ(b("foobar"), "Zm9vYmFy");
}

}  // namespace
