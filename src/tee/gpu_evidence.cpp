// GPU evidence collector: see gpu_evidence.hpp.
#include "tee/gpu_evidence.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "crypto/random.hpp"

namespace pi::tee {

namespace {

using Clock = std::chrono::steady_clock;

// Fixed-bucket histogram (seconds), lock-free.
class Hist {
 public:
  static constexpr std::array<double, 12> kBounds = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  void observe(double s) {
    std::size_t i = 0;
    while (i < kBounds.size() && s > kBounds[i]) ++i;
    buckets_[i]++;
    count_++;
    sum_us_ += static_cast<std::uint64_t>(std::max(0.0, s) * 1e6);
  }
  void render(std::string& out, const char* name, const char* help) const {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " histogram\n";
    std::uint64_t cum = 0;
    char buf[64];
    for (std::size_t i = 0; i < kBounds.size(); ++i) {
      cum += buckets_[i].load();
      std::snprintf(buf, sizeof buf, "%g", kBounds[i]);
      out += std::string(name) + "_bucket{le=\"" + buf + "\"} " + std::to_string(cum) + "\n";
    }
    cum += buckets_[kBounds.size()].load();
    out += std::string(name) + "_bucket{le=\"+Inf\"} " + std::to_string(cum) + "\n";
    std::snprintf(buf, sizeof buf, "%.6f", static_cast<double>(sum_us_.load()) / 1e6);
    out += std::string(name) + "_sum " + buf + "\n";
    out += std::string(name) + "_count " + std::to_string(count_.load()) + "\n";
  }

 private:
  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_us_{0};
};

GpuEvidenceResult simple(GpuEvidenceStatus st, std::string error, NvmlErrorKind kind = NvmlErrorKind::None) {
  GpuEvidenceResult r;
  r.status = st;
  r.error = std::move(error);
  r.error_kind = kind;
  return r;
}

}  // namespace

const char* to_string(GpuEvidenceStatus s) {
  switch (s) {
    case GpuEvidenceStatus::Ok:
      return "ok";
    case GpuEvidenceStatus::Unavailable:
      return "unavailable";
    case GpuEvidenceStatus::Error:
      return "error";
    case GpuEvidenceStatus::Timeout:
      return "timeout";
    case GpuEvidenceStatus::Busy:
      return "busy";
  }
  return "unknown";
}

protocol::GpuEvidence GpuEvidenceResult::to_protocol() const {
  protocol::GpuEvidence g;
  if (ok()) {
    g.nvidia_payload = nvidia_payload;
    g.items = gpu_evidence;
  } else {
    g.error = error.empty() ? std::string(protocol::kGpuUnavailableError) : error;
  }
  if (!info.empty()) g.info = info;
  if (simulated) {
    g.simulated = true;
    g.notice = std::string(protocol::kGpuSimulatedNotice);
  }
  return g;
}

void GpuEvidenceResult::apply_to(boost::json::object& report) const { to_protocol().write_to(report); }

GpuEvidenceResult GpuEvidenceCollector::build_result(const NvmlCollection& c, const protocol::Nonce& nonce) {
  GpuEvidenceResult r;
  r.nonce_hex = to_hex(nonce);
  r.simulated = c.simulated;
  boost::json::object info;
  info["driver_version"] = c.driver_version;
  info["cc_environment"] = c.cc.environment;
  info["dev_tools_mode"] = c.cc.dev_tools_mode;
  info["ppcie"] = c.cc.ppcie;
  info["multi_gpu_mode"] = c.cc.settings_known ? boost::json::value(c.cc.multi_gpu_mode) : boost::json::value(nullptr);
  info["simulated"] = c.simulated;
  if (!c.ok()) {
    r.status = GpuEvidenceStatus::Error;
    r.error_kind = c.error_kind;
    r.error = c.error;
    r.info = std::move(info);
    return r;
  }
  boost::json::array gpus;
  protocol::NvidiaPayload payload;
  payload.nonce = r.nonce_hex;
  for (const auto& g : c.gpus) {
    protocol::GpuEvidenceItem item;
    item.arch = g.arch;
    item.certificate = pi::base64_encode(as_bytes(g.cert_chain_pem));
    item.evidence = pi::base64_encode(g.report);
    // vllm-proxy's evidence_list items carry certificate, evidence and arch; gpu_evidence items add the nonce.
    payload.evidence_list.push_back(item);
    item.nonce = r.nonce_hex;
    r.gpu_evidence.push_back(std::move(item));
    gpus.push_back(boost::json::object{{"index", g.index}, {"uuid", g.uuid}, {"name", g.name}, {"arch", g.arch}});
  }
  r.arch = c.gpus.empty() ? std::string("UNKNOWN") : c.gpus.front().arch;
  payload.arch = r.arch;
  r.nvidia_payload = payload.to_text();
  info["gpus"] = std::move(gpus);
  r.info = std::move(info);
  r.status = GpuEvidenceStatus::Ok;
  return r;
}

// ---------------------------------------------------------------------------------------------------------------

namespace {

// One request. Exactly one of the NVML thread (result) or the timeout claims `done` and calls `fn`.
struct Waiter {
  std::atomic<bool> done{false};
  std::function<void(GpuEvidenceResult, std::shared_ptr<void> keepalive)> fn;
  // Async requests: keeps the per-request state (timer, coroutine handler) alive until `done` is claimed; whoever
  // claims it releases it. Never destroyed by the NVML thread otherwise, so nothing of the caller's io_context is
  // touched from that thread after a timeout.
  std::shared_ptr<void> keepalive;
  Clock::time_point start = Clock::now();
  bool shared = false;
};

struct Job {
  protocol::Nonce nonce{};
  bool for_cache = false;
  std::vector<std::shared_ptr<Waiter>> waiters;
};

}  // namespace

struct GpuEvidenceCollector::Impl {
  std::unique_ptr<NvmlLibrary> lib_owner;
  NvmlLibrary* lib = nullptr;
  GpuEvidenceOptions opts;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::shared_ptr<Job>> queue;
  std::map<protocol::Nonce, std::shared_ptr<Job>> pending;  // queued or running, by nonce
  std::size_t fresh_inflight = 0;
  bool stop = false;
  bool abandoned = false;  // shutdown gave up waiting for NVML: touch no waiter any more
  bool exited = false;
  std::condition_variable exit_cv;
  // no-nonce cache
  bool cache_wanted = false;
  std::shared_ptr<Job> cache_job;  // queued or running cache refresh
  std::shared_ptr<const GpuEvidenceResult> cache;
  Clock::time_point cache_at{};
  std::thread worker;

  // metrics
  std::atomic<std::uint64_t> collections{0}, cache_collections{0}, failures{0}, timeouts{0}, cache_hits{0},
      rejections{0}, shared{0}, requests{0};
  std::atomic<std::size_t> max_fresh_inflight{0};
  std::atomic<std::int64_t> inflight_gauge{0};
  Hist nvml_seconds, request_seconds;

  void complete(const std::shared_ptr<Waiter>& w, GpuEvidenceResult r) {
    if (w->done.exchange(true)) return;
    r.shared = w->shared;
    request_seconds.observe(std::chrono::duration<double>(Clock::now() - w->start).count());
    w->fn(std::move(r), std::move(w->keepalive));
  }

  GpuEvidenceResult timeout_result() const {
    return simple(GpuEvidenceStatus::Timeout, "GPU evidence was not collected within " +
                                                  std::to_string(opts.timeout.count()) +
                                                  " ms (NVML busy or hung); no evidence is returned");
  }

  // True when the timeout wins the race for `w` (the caller then answers Timeout itself).
  bool claim_timeout(Waiter& w) {
    if (w.done.exchange(true)) return false;
    timeouts++;
    request_seconds.observe(std::chrono::duration<double>(Clock::now() - w.start).count());
    return true;
  }

  void expire(const std::shared_ptr<Waiter>& w) {  // blocking callers
    if (claim_timeout(*w)) w->fn(timeout_result(), std::move(w->keepalive));
  }

  bool cache_stale_locked(Clock::time_point now) const {
    if (!cache) return true;
    auto ttl = cache->ok() ? opts.cache_ttl : std::min(opts.cache_ttl, opts.error_retry);
    return now - cache_at >= ttl;
  }

  void enqueue_cache_job_locked() {
    if (cache_job) return;
    auto j = std::make_shared<Job>();
    j->for_cache = true;
    crypto::random_fill(j->nonce);
    cache_job = j;
    pending[j->nonce] = j;
    queue.push_back(j);
    cv.notify_one();
  }

  // Starts (or joins) a collection. Completes `w` immediately when the pool is full.
  void start_fresh(const protocol::Nonce& nonce, const std::shared_ptr<Waiter>& w) {
    requests++;
    std::unique_lock lk(mu);
    if (stop) {
      lk.unlock();
      complete(w, simple(GpuEvidenceStatus::Error, "GPU evidence collector is shutting down"));
      return;
    }
    if (auto it = pending.find(nonce); it != pending.end()) {
      w->shared = true;
      shared++;
      it->second->waiters.push_back(w);
      return;
    }
    if (fresh_inflight >= opts.max_fresh) {
      lk.unlock();
      rejections++;
      auto r = simple(GpuEvidenceStatus::Busy, "too many GPU attestations in flight (pool of " +
                                                   std::to_string(opts.max_fresh) + "); retry shortly");
      r.retry_after_s = opts.retry_after_s;
      complete(w, std::move(r));
      return;
    }
    auto j = std::make_shared<Job>();
    j->nonce = nonce;
    j->waiters.push_back(w);
    pending[nonce] = j;
    queue.push_back(j);
    fresh_inflight++;
    inflight_gauge++;
    std::size_t prev = max_fresh_inflight.load();
    while (fresh_inflight > prev && !max_fresh_inflight.compare_exchange_weak(prev, fresh_inflight)) {
    }
    cv.notify_one();
  }

  void start_cached(const std::shared_ptr<Waiter>& w) {
    requests++;
    std::unique_lock lk(mu);
    if (stop) {
      lk.unlock();
      complete(w, simple(GpuEvidenceStatus::Error, "GPU evidence collector is shutting down"));
      return;
    }
    cache_wanted = true;
    const auto now = Clock::now();
    const bool stale = cache_stale_locked(now);
    if (cache && (cache->ok() || !stale)) {
      // Fresh, or stale but good evidence (served while a background refresh runs).
      GpuEvidenceResult r = *cache;
      r.cached = true;
      r.age_s = std::chrono::duration<double>(now - cache_at).count();
      if (stale) enqueue_cache_job_locked();
      lk.unlock();
      cache_hits++;
      complete(w, std::move(r));
      return;
    }
    // Nothing usable yet: join the (possibly new) cache refresh.
    enqueue_cache_job_locked();
    if (cache_job->waiters.size() > 0) {
      w->shared = true;
      shared++;
    }
    cache_job->waiters.push_back(w);
  }

  void run() {
    std::unique_lock lk(mu);
    for (;;) {
      if (stop) break;
      if (queue.empty()) {
        if (cache_wanted && !cache_job) {
          auto now = Clock::now();
          if (cache_stale_locked(now)) {
            enqueue_cache_job_locked();
            continue;
          }
          auto ttl = cache->ok() ? opts.cache_ttl : std::min(opts.cache_ttl, opts.error_retry);
          cv.wait_until(lk, cache_at + ttl);
        } else {
          cv.wait(lk);
        }
        continue;
      }
      auto job = queue.front();
      queue.pop_front();
      lk.unlock();

      auto t0 = Clock::now();
      NvmlCollection c;
      try {
        c = lib->collect(job->nonce);
      } catch (const std::exception& e) {  // allocation failure and the like: never let the thread die
        c.error_kind = NvmlErrorKind::DeviceError;
        c.error = std::string("GPU evidence collection failed: ") + e.what();
      }
      nvml_seconds.observe(std::chrono::duration<double>(Clock::now() - t0).count());
      collections++;
      if (job->for_cache) cache_collections++;
      if (!c.ok()) {
        failures++;
        spdlog::warn("GPU evidence collection failed: {}", c.error);
      }
      GpuEvidenceResult r = GpuEvidenceCollector::build_result(c, job->nonce);

      lk.lock();
      if (abandoned) {
        abandon_locked(job);
        return;
      }
      pending.erase(job->nonce);
      if (job->for_cache) {
        cache = std::make_shared<const GpuEvidenceResult>(r);
        cache_at = Clock::now();
        cache_job.reset();
      } else {
        fresh_inflight--;
        inflight_gauge--;
      }
      auto waiters = std::move(job->waiters);
      lk.unlock();
      for (auto& w : waiters) {
        GpuEvidenceResult copy = r;
        if (job->for_cache) copy.cached = true;
        complete(w, std::move(copy));
      }
      lk.lock();
    }
    // Shutting down: fail what is still queued.
    std::vector<std::shared_ptr<Waiter>> left;
    for (auto& j : queue)
      for (auto& w : j->waiters) left.push_back(w);
    queue.clear();
    pending.clear();
    lk.unlock();
    for (auto& w : left) complete(w, simple(GpuEvidenceStatus::Error, "GPU evidence collector is shutting down"));
    lk.lock();
    exited = true;
    exit_cv.notify_all();
  }

  // The waiters may belong to io_contexts that no longer exist: keep them (and what they own) alive, untouched, for
  // the rest of the process.
  void abandon_locked(const std::shared_ptr<Job>& running) {
    static auto* graveyard = new std::vector<std::shared_ptr<Job>>();  // reachable: not reported as a leak
    graveyard->push_back(running);
    for (auto& j : queue) graveyard->push_back(j);
    queue.clear();
    pending.clear();
    cache_job.reset();
    exited = true;
    exit_cv.notify_all();
  }
};

GpuEvidenceCollector::GpuEvidenceCollector(GpuEvidenceOptions opts) : opts_(std::move(opts)) {
  if (opts_.max_fresh == 0) opts_.max_fresh = 1;
  impl_ = std::make_shared<Impl>();
  impl_->opts = opts_;
  const std::string path = opts_.library_path.empty() ? NvmlLibrary::kDefaultPath : opts_.library_path;
  try {
    impl_->lib_owner = NvmlLibrary::open(path);
  } catch (const NvmlError& e) {
    load_error_ = std::string("GPU evidence unavailable: ") + e.what();
    spdlog::warn("{}", load_error_);
    return;
  }
  impl_->lib = impl_->lib_owner.get();
  available_ = true;
  simulated_ = impl_->lib->simulated();
  spdlog::info("NVML loaded from {}{}", impl_->lib->path(), simulated_ ? " (SIMULATED NVML)" : "");
  impl_->worker = std::thread([impl = impl_] { impl->run(); });
}

GpuEvidenceCollector::~GpuEvidenceCollector() { shutdown(); }

void GpuEvidenceCollector::shutdown(std::chrono::milliseconds grace) {
  const auto impl = impl_;
  std::unique_lock lk(impl->mu);
  impl->stop = true;
  impl->cv.notify_all();
  if (!impl->worker.joinable()) return;
  if (!impl->exit_cv.wait_for(lk, grace, [&] { return impl->exited; })) {
    impl->abandoned = true;
    lk.unlock();
    spdlog::error("NVML did not return within {} ms at shutdown: its thread is abandoned", grace.count());
    impl->worker.detach();
    return;
  }
  lk.unlock();
  impl->worker.join();
}

namespace {

GpuEvidenceResult unavailable(const std::string& load_error) {
  return simple(GpuEvidenceStatus::Unavailable, load_error, NvmlErrorKind::LibraryMissing);
}

}  // namespace

GpuEvidenceResult GpuEvidenceCollector::collect_blocking(const protocol::Nonce& nonce) {
  if (!available_) return unavailable(load_error_);
  auto prom = std::make_shared<std::promise<GpuEvidenceResult>>();
  auto fut = prom->get_future();
  auto w = std::make_shared<Waiter>();
  w->fn = [prom](GpuEvidenceResult r, const std::shared_ptr<void>&) { prom->set_value(std::move(r)); };
  impl_->start_fresh(nonce, w);
  if (fut.wait_for(opts_.timeout) != std::future_status::ready) impl_->expire(w);
  return fut.get();
}

GpuEvidenceResult GpuEvidenceCollector::collect_cached_blocking() {
  if (!available_) return unavailable(load_error_);
  auto prom = std::make_shared<std::promise<GpuEvidenceResult>>();
  auto fut = prom->get_future();
  auto w = std::make_shared<Waiter>();
  w->fn = [prom](GpuEvidenceResult r, const std::shared_ptr<void>&) { prom->set_value(std::move(r)); };
  impl_->start_cached(w);
  if (fut.wait_for(opts_.timeout) != std::future_status::ready) impl_->expire(w);
  return fut.get();
}

namespace {

// Per async request: the timeout timer and the coroutine's completion handler, both used only on the caller's
// executor.
template <typename H>
struct AsyncOp {
  AsyncOp(const boost::asio::any_io_executor& ex, std::chrono::milliseconds t, H&& h)
      : timer(ex, t), handler(std::move(h)) {}
  boost::asio::steady_timer timer;
  H handler;
  std::shared_ptr<Waiter> w;
};

// Runs `start(waiter)` and completes the awaiting coroutine on its own executor, with a timer for the timeout.
template <typename Start>
boost::asio::awaitable<GpuEvidenceResult> await_waiter(GpuEvidenceCollector::Impl* impl,
                                                       std::chrono::milliseconds timeout, Start start) {
  auto ex = co_await boost::asio::this_coro::executor;
  co_return co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>, void(GpuEvidenceResult)>(
      [impl, ex, timeout, start](auto handler) {
        using Op = AsyncOp<decltype(handler)>;
        auto op = std::make_shared<Op>(ex, timeout, std::move(handler));
        auto w = std::make_shared<Waiter>();
        op->w = w;
        w->keepalive = op;  // released by whoever claims `done`
        // NVML thread, after it claimed `done`: the op travels to the caller's executor inside the posted function,
        // so it is used and destroyed there only.
        w->fn = [ex](GpuEvidenceResult r, std::shared_ptr<void> keep) {
          auto o = std::static_pointer_cast<Op>(std::move(keep));
          boost::asio::post(ex, [o = std::move(o), r = std::move(r)]() mutable {
            o->timer.cancel();
            auto& h = o->handler;
            std::move(h)(std::move(r));
          });
        };
        op->timer.async_wait([op, impl](const boost::system::error_code& ec) {
          if (ec) return;
          if (!impl->claim_timeout(*op->w)) return;
          op->w->keepalive.reset();
          auto& h = op->handler;
          std::move(h)(impl->timeout_result());
        });
        start(w);
      },
      boost::asio::use_awaitable);
}

}  // namespace

boost::asio::awaitable<GpuEvidenceResult> GpuEvidenceCollector::collect(const protocol::Nonce& nonce) {
  if (!available_) co_return unavailable(load_error_);
  protocol::Nonce n = nonce;
  Impl* impl = impl_.get();
  co_return co_await await_waiter(impl, opts_.timeout,
                                  [impl, n](const std::shared_ptr<Waiter>& w) { impl->start_fresh(n, w); });
}

boost::asio::awaitable<GpuEvidenceResult> GpuEvidenceCollector::collect_cached() {
  if (!available_) co_return unavailable(load_error_);
  Impl* impl = impl_.get();
  co_return co_await await_waiter(impl, opts_.timeout,
                                  [impl](const std::shared_ptr<Waiter>& w) { impl->start_cached(w); });
}

GpuEvidenceStats GpuEvidenceCollector::stats() const {
  GpuEvidenceStats s;
  s.collections = impl_->collections;
  s.cache_collections = impl_->cache_collections;
  s.failures = impl_->failures;
  s.timeouts = impl_->timeouts;
  s.cache_hits = impl_->cache_hits;
  s.rejections = impl_->rejections;
  s.shared = impl_->shared;
  s.requests = impl_->requests;
  s.max_fresh_inflight = impl_->max_fresh_inflight;
  return s;
}

void GpuEvidenceCollector::render_metrics(std::string& out) const {
  auto counter = [&out](const char* name, const char* help, std::uint64_t v, const char* labels = "") {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name + labels + " " +
           std::to_string(v) + "\n";
  };
  auto gauge = [&out](const char* name, const char* help, std::int64_t v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n" + name + " " +
           std::to_string(v) + "\n";
  };
  const Impl& m = *impl_;
  gauge("pi_gpu_evidence_available", "1 when an NVML library is loaded", available_ ? 1 : 0);
  gauge("pi_gpu_evidence_simulated", "1 when the loaded NVML is the project's simulated library", simulated() ? 1 : 0);
  out +=
      "# HELP pi_gpu_evidence_collections_total NVML evidence collections run\n"
      "# TYPE pi_gpu_evidence_collections_total counter\n";
  out += "pi_gpu_evidence_collections_total{purpose=\"fresh\"} " +
         std::to_string(m.collections.load() - m.cache_collections.load()) + "\n";
  out += "pi_gpu_evidence_collections_total{purpose=\"cache\"} " + std::to_string(m.cache_collections.load()) + "\n";
  counter("pi_gpu_evidence_failures_total", "NVML collections that ended in an error", m.failures);
  counter("pi_gpu_evidence_timeouts_total", "requests answered without evidence because of the timeout", m.timeouts);
  counter("pi_gpu_evidence_cache_hits_total", "no-nonce requests served from the cache", m.cache_hits);
  counter("pi_gpu_evidence_rejections_total", "fresh-nonce requests rejected because the pool was full (429)",
          m.rejections);
  counter("pi_gpu_evidence_shared_total", "requests that joined a collection already running for the same nonce",
          m.shared);
  gauge("pi_gpu_evidence_inflight", "fresh-nonce collections queued or running", m.inflight_gauge);
  m.nvml_seconds.render(out, "pi_gpu_evidence_collection_seconds", "time spent in NVML per collection");
  m.request_seconds.render(out, "pi_gpu_evidence_request_seconds", "time from request to evidence (or error)");
}

}  // namespace pi::tee
