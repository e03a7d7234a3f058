#pragma once
// The Intel DCAP quote layout — v3 (SGX), v4 (TDX 1.0) and v5 (TDX 1.0/1.5) — in one place: the
// named offsets and sizes below, one parser and one serializer built on them. The verifier parses
// with it (verify/tdx_quote.hpp, dcap.hpp), dev-tee builds its simulated quotes with it and finds
// REPORTDATA in a recorded quote with it. Layouts follow Intel's "TDX DCAP Quoting Library API"
// (quote format appendix). Parsing only checks structure; every cryptographic check is the verifier's.
//
//   v3: header (48) ‖ SGX enclave report (384) ‖ u32 sig size ‖ signature data (v3 form)
//   v4: header (48) ‖ TD report 1.0 (584)      ‖ u32 sig size ‖ signature data
//   v5: header (48) ‖ u16 body type ‖ u32 body size ‖ body (SGX 384 / TD 1.0 584 / TD 1.5 648) ‖ u32 sig size ‖ …
//   signature data: ECDSA r‖s (64) ‖ attestation key x‖y (64) ‖ then
//     v3:    QE report block
//     v4/v5: u16 type 6 ‖ u32 size ‖ QE report block
//   QE report block: QE report (384) ‖ QE report signature (64) ‖ u16 auth size ‖ auth data ‖
//                    u16 certification data type (5 = PCK chain PEM) ‖ u32 size ‖ certification data
// All integers are little-endian.
#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "crypto/bytes.hpp"

namespace pi::protocol::tdx {

struct QuoteParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A field: where it starts inside its enclosing structure and how many bytes it takes.
struct Field {
  std::size_t offset;
  std::size_t size;
  constexpr std::size_t end() const { return offset + size; }
};

inline constexpr std::uint32_t kTeeTypeSgx = 0x00000000;
inline constexpr std::uint32_t kTeeTypeTdx = 0x00000081;
inline constexpr std::uint16_t kAttestationKeyEcdsaP256 = 2;

// Quote header (48 bytes, all versions).
namespace header {
inline constexpr Field kVersion{0, 2};
inline constexpr Field kAttestationKeyType{2, 2};
inline constexpr Field kTeeType{4, 4};   // v3: reserved (zero = SGX)
inline constexpr Field kReserved{8, 4};  // v3: QE SVN ‖ PCE SVN
inline constexpr Field kQeVendorId{12, 16};
inline constexpr Field kUserData{28, 20};
inline constexpr std::size_t kSize = 48;
}  // namespace header

// v5 only: u16 body type ‖ u32 body size, between the header and the body.
namespace body_descriptor {
inline constexpr Field kType{0, 2};
inline constexpr Field kBodySize{2, 4};
inline constexpr std::size_t kSize = 6;
inline constexpr std::uint16_t kSgxEnclaveReport = 1;
inline constexpr std::uint16_t kTdReport10 = 2;
inline constexpr std::uint16_t kTdReport15 = 3;
}  // namespace body_descriptor

// TD report body: TD 1.0 = 584 bytes; TD 1.5 appends tee_tcb_svn2 and mr_service_td (648 bytes).
namespace td_report {
inline constexpr Field kTeeTcbSvn{0, 16};
inline constexpr Field kMrSeam{16, 48};
inline constexpr Field kMrSignerSeam{64, 48};
inline constexpr Field kSeamAttributes{112, 8};
inline constexpr Field kTdAttributes{120, 8};
inline constexpr Field kXfam{128, 8};
inline constexpr Field kMrTd{136, 48};
inline constexpr Field kMrConfigId{184, 48};
inline constexpr Field kMrOwner{232, 48};
inline constexpr Field kMrOwnerConfig{280, 48};
inline constexpr Field kRtmr0{328, 48};  // rtmr[i] at kRtmr0.offset + i * 48
inline constexpr Field kReportData{520, 64};
inline constexpr std::size_t kSize10 = 584;
inline constexpr Field kTeeTcbSvn2{584, 16};
inline constexpr Field kMrServiceTd{600, 48};
inline constexpr std::size_t kSize15 = 648;
constexpr Field rtmr(std::size_t i) { return {kRtmr0.offset + i * kRtmr0.size, kRtmr0.size}; }
}  // namespace td_report

// SGX enclave report body (384 bytes): the QE's report, or the body of an SGX quote.
namespace enclave_report {
inline constexpr Field kCpuSvn{0, 16};
inline constexpr Field kMiscSelect{16, 4};
inline constexpr Field kAttributes{48, 16};
inline constexpr Field kMrEnclave{64, 32};
inline constexpr Field kMrSigner{128, 32};
inline constexpr Field kIsvProdId{256, 2};
inline constexpr Field kIsvSvn{258, 2};
inline constexpr Field kReportData{320, 64};
inline constexpr std::size_t kSize = 384;  // every byte not named above is reserved (zero)
}  // namespace enclave_report

// Signature data (after the u32 signature-data size).
namespace signature_data {
inline constexpr Field kQuoteSignature{0, 64};   // r ‖ s over header ‖ [body descriptor] ‖ body
inline constexpr Field kAttestationKey{64, 64};  // x ‖ y (P-256)
inline constexpr std::size_t kCertDataOffset = 128;
inline constexpr std::uint16_t kCertPckChain = 5;      // PCK certificate chain (PEM)
inline constexpr std::uint16_t kCertQeReportData = 6;  // QE report certification data
}  // namespace signature_data

// REPORTDATA of a v4 quote: 48-byte header + 520.
inline constexpr std::size_t kV4ReportDataOffset = header::kSize + td_report::kReportData.offset;
static_assert(kV4ReportDataOffset == 568);

struct EnclaveReport {
  std::array<std::uint8_t, 16> cpu_svn{};
  std::uint32_t misc_select = 0;
  std::array<std::uint8_t, 16> attributes{};
  std::array<std::uint8_t, 32> mr_enclave{};
  std::array<std::uint8_t, 32> mr_signer{};
  std::uint16_t isv_prod_id = 0;
  std::uint16_t isv_svn = 0;
  std::array<std::uint8_t, 64> report_data{};
  Bytes raw;  // parsed: the exact 384 bytes (what the PCK key signs); not read by serialize
};

struct TdReport {
  std::array<std::uint8_t, 16> tee_tcb_svn{};
  std::array<std::uint8_t, 48> mr_seam{};
  std::array<std::uint8_t, 48> mr_signer_seam{};
  std::array<std::uint8_t, 8> seam_attributes{};
  std::array<std::uint8_t, 8> td_attributes{};
  std::array<std::uint8_t, 8> xfam{};
  std::array<std::uint8_t, 48> mr_td{};
  std::array<std::uint8_t, 48> mr_config_id{};
  std::array<std::uint8_t, 48> mr_owner{};
  std::array<std::uint8_t, 48> mr_owner_config{};
  std::array<std::array<std::uint8_t, 48>, 4> rtmr{};
  std::array<std::uint8_t, 64> report_data{};
  bool td15 = false;
  std::array<std::uint8_t, 16> tee_tcb_svn2{};
  std::array<std::uint8_t, 48> mr_service_td{};
};

struct Quote {
  // header
  std::uint16_t version = 0;
  std::uint16_t attestation_key_type = 0;
  std::uint32_t tee_type = 0;
  std::array<std::uint8_t, 4> header_reserved{};  // v3: QE SVN ‖ PCE SVN; v4/v5: zero
  std::array<std::uint8_t, 16> qe_vendor_id{};
  std::array<std::uint8_t, 20> user_data{};

  bool is_tdx() const { return tee_type == kTeeTypeTdx; }
  TdReport td;                    // when is_tdx()
  EnclaveReport sgx;              // when !is_tdx()
  std::size_t signed_length = 0;  // header + body: what the attestation key signs
  // Where the signature data ends. Real quotes (QGS / configfs-tsm) are often followed by zero
  // padding up to a fixed buffer size (70 bytes in every recorded dstack quote). parse_quote does not
  // look past this point; the rule for what may follow is check_trailing_bytes below.
  std::size_t length = 0;

  // signature data
  std::array<std::uint8_t, 64> quote_signature{};  // r ‖ s
  std::array<std::uint8_t, 64> attestation_key{};  // x ‖ y (P-256)
  EnclaveReport qe_report;
  std::array<std::uint8_t, 64> qe_report_signature{};
  Bytes qe_auth_data;
  std::uint16_t cert_data_type = 0;  // 5 = PCK certificate chain (PEM)
  Bytes cert_data;
};

// Throws QuoteParseError with a message naming the field that is wrong or truncated.
Quote parse_quote(ByteView raw);

// The exact 384 bytes of an enclave report (reserved bytes zero; `raw` is ignored).
Bytes serialize_enclave_report(const EnclaveReport& r);
// header ‖ [v5 body descriptor] ‖ body: the bytes the attestation key signs.
// Throws std::invalid_argument for a version / TEE type / TD 1.5 combination the layout does not have
// (v3 must be SGX, v4 TDX 1.0, v5 either).
Bytes serialize_signed_part(const Quote& q);
// The whole quote: signed part ‖ u32 size ‖ signature data (v3 or v4/v5 form). parse_quote of the
// result gives back `q` (with `raw`, signed_length and length filled in). Throws std::invalid_argument
// as serialize_signed_part, or when a length does not fit its size field.
Bytes serialize_quote(const Quote& q);

// The bytes after the signature data (raw[q.length..]): covered by no signature. The rule (one home, used by
// the verifier): zero bytes are padding and are accepted (the verifier says so in a note); any non-zero byte
// there is data outside every signature and the quote is rejected.
struct TrailingBytes {
  std::size_t count = 0;                 // raw.size() - q.length
  std::size_t first_nonzero_offset = 0;  // offset in `raw` of the first non-zero byte, when !all_zero
  bool all_zero = true;
};
TrailingBytes trailing_bytes(ByteView raw, const Quote& q);
// Throws QuoteParseError when a byte after the signature data is not zero; returns the padding length.
std::size_t check_trailing_bytes(ByteView raw, const Quote& q);

// Where REPORTDATA (64 bytes) sits in a TDX v4/v5 quote. Looks at the header and body only (the
// signature data may be anything). Throws QuoteParseError when `quote` is not a TDX v4/v5 quote whose
// TD report body fits.
std::size_t report_data_offset(ByteView quote);

// "SGX", "TDX" or "unknown (0x..)".
std::string tee_type_name(std::uint32_t tee_type);

}  // namespace pi::protocol::tdx
