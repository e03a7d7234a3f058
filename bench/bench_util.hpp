// Plumbing shared by the benchmark tools (pi-loadgen, pi-bench-backend): command-line walking,
// HOST:PORT splitting, the open-files limit. Benchmarks only; not part of the product.
#pragma once

#include <sys/resource.h>

#include <cstdlib>

#include <string>
#include <string_view>

namespace pi::bench {

// Walks argv: `while (args.next()) { if (args.is("--x")) v = args.value(); else args.fail(); }`.
// Every failure (missing value, unknown flag, bad number via the caller's try/catch) ends in `usage`,
// which must not return.
class Args {
 public:
  using Usage = void (*)(const char* argv0);
  Args(int argc, char** argv, Usage usage) : argc_(argc), argv_(argv), usage_(usage) {}

  bool next() {
    if (++i_ >= argc_) return false;
    flag_ = argv_[i_];
    return true;
  }
  [[nodiscard]] bool is(std::string_view name) const { return flag_ == name; }
  std::string value() {
    if (i_ + 1 >= argc_) fail();
    return argv_[++i_];
  }
  [[noreturn]] void fail() const {
    usage_(argv_[0]);
    std::abort();  // usage() exits; this only satisfies [[noreturn]]
  }

 private:
  int argc_;
  char** argv_;
  Usage usage_;
  int i_ = 0;
  std::string_view flag_;
};

// Splits "HOST:PORT" at the last colon; false when there is none.
inline bool split_host_port(std::string_view v, std::string& host, std::string& port) {
  const auto c = v.rfind(':');
  if (c == std::string_view::npos) return false;
  host = std::string(v.substr(0, c));
  port = std::string(v.substr(c + 1));
  return true;
}

// 4096 streams need thousands of descriptors: raise the soft limit to the hard one.
inline void raise_nofile_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace pi::bench
