#pragma once
// Fetching DCAP collateral for a TDX quote from Intel PCS (or a PCCS), with an on-disk cache.
// Only used when --collateral is not given and the run is not --offline.
#include <cstdint>
#include <optional>
#include <string>

#include "verify/dcap.hpp"

namespace pi::verify {

inline constexpr const char* kIntelPcsUrl = "https://api.trustedservices.intel.com";
inline constexpr const char* kIntelRootCrlUrl = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

struct CollateralSource {
  std::string pccs_url;   // empty: Intel PCS
  std::string cache_dir;  // empty: no cache
  std::int64_t now = 0;   // a cached entry is reused only while its TCB info / QE identity are valid at `now`
};

// Default cache folder: $XDG_CACHE_HOME/private-inference/collateral, else ~/.cache/…; "" if neither.
std::string default_collateral_cache_dir();

// Returns nullopt and sets `why` on failure; on success `why` says where it came from.
std::optional<Collateral> fetch_collateral(const Quote& q, const CollateralSource& src, std::string& why);

// The exact text of the JSON value under `key` in `body` (the signed bytes of tcbInfo /
// enclaveIdentity). Throws std::runtime_error.
std::string raw_json_member(std::string_view body, std::string_view key);

}  // namespace pi::verify
