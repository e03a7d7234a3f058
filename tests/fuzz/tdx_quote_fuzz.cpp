// TDX / SGX quote bytes (what `verify` reads from an attestation report's intel_quote, or a file) through the
// structural parser, the REPORTDATA locator, and the verifier's DCAP path against the recorded Intel collateral:
// PCK chain PEM, QE report, QE identity and TCB evaluation all read bytes of the quote.
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "crypto/bytes.hpp"
#include "fuzz_support.hpp"
#include "protocol/tdx_quote.hpp"
#include "verify/dcap.hpp"

namespace {

const pi::verify::Collateral& collateral() {
  static const pi::verify::Collateral c =
      pi::verify::parse_collateral_json(pi::fuzz::read_fixture("tdx/collateral_fmspc20a06f_2025-09.json"));
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const pi::ByteView raw(data, size);
  try {
    const auto q = pi::protocol::tdx::parse_quote(raw);
    // A parsed quote serializes back to its signed part; both views must agree on the length.
    if (pi::protocol::tdx::serialize_signed_part(q).size() != q.signed_length) __builtin_trap();
  } catch (const pi::protocol::tdx::QuoteParseError&) {
  } catch (const std::invalid_argument&) {  // serialize_signed_part: a combination the layout does not have
  }
  try {
    const auto off = pi::protocol::tdx::report_data_offset(raw);
    if (off + 64 > size) __builtin_trap();
  } catch (const pi::protocol::tdx::QuoteParseError&) {
  }
  // Never throw on a bad quote: every problem is a failed check.
  (void)pi::verify::verify_quote_structure(raw);
  const auto r = pi::verify::verify_dcap(raw, collateral(), pi::fuzz::kCollateralNow);
  if (r.quote) {
    try {
      (void)pi::verify::pck_info_from_quote(*r.quote);
    } catch (const std::runtime_error&) {  // documented: throws when the PCK certificate cannot be read
    }
  }
  return 0;
}
