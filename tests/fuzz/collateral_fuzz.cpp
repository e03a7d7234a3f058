// DCAP collateral (verify/dcap.hpp: dcap-qvl's QuoteCollateralV3 JSON from --collateral or the on-disk cache;
// verify/collateral_fetch.hpp: the signed members cut out of Intel PCS answers): the JSON reader, its writer
// (which must give back what was read), the raw-member extractor, and the whole DCAP verification of the
// recorded dstack quote with the fuzzed collateral — TCB info and QE identity JSON, issuer chains and CRLs.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "crypto/bytes.hpp"
#include "fuzz_support.hpp"
#include "verify/collateral_fetch.hpp"
#include "verify/dcap.hpp"

namespace {

const pi::Bytes& quote() {
  static const pi::Bytes q = [] {
    auto hex = pi::fuzz::read_fixture("tdx/near_dstack_quote.hex");
    while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r' || hex.back() == ' ')) hex.pop_back();
    return pi::from_hex(hex).value();
  }();
  return q;
}

bool same(const pi::verify::Collateral& a, const pi::verify::Collateral& b) {
  return a.pck_crl_issuer_chain == b.pck_crl_issuer_chain && a.root_ca_crl == b.root_ca_crl && a.pck_crl == b.pck_crl &&
         a.tcb_info_issuer_chain == b.tcb_info_issuer_chain && a.tcb_info == b.tcb_info &&
         a.tcb_info_signature == b.tcb_info_signature && a.qe_identity_issuer_chain == b.qe_identity_issuer_chain &&
         a.qe_identity == b.qe_identity && a.qe_identity_signature == b.qe_identity_signature &&
         a.pck_certificate_chain == b.pck_certificate_chain;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = pi::fuzz::as_text(data, size);
  for (const char* key : {"tcbInfo", "enclaveIdentity"}) {
    try {
      const auto member = pi::verify::raw_json_member(text, key);
      if (member.empty() || member.front() != '{' || member.back() != '}') __builtin_trap();
    } catch (const std::runtime_error&) {  // documented
    }
  }
  pi::verify::Collateral c;
  try {
    c = pi::verify::parse_collateral_json(text);
  } catch (const std::runtime_error&) {  // documented: names the missing / malformed field
    return 0;
  }
  if (!same(pi::verify::parse_collateral_json(pi::verify::collateral_to_json(c)), c)) __builtin_trap();
  (void)pi::verify::verify_dcap(quote(), c, pi::fuzz::kCollateralNow);  // never throws: every step is a check
  return 0;
}
