#pragma once
// Intel DCAP quote parsing: v3 (SGX), v4 (TDX 1.0) and v5 (TDX 1.0/1.5) quotes.
// Layouts follow Intel's "TDX DCAP Quoting Library API" (quote format appendix).
// Parsing only checks structure; every cryptographic check lives in dcap.hpp.
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "crypto/bytes.hpp"

namespace pi::verify {

struct QuoteParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline constexpr std::uint32_t kTeeTypeSgx = 0x00000000;
inline constexpr std::uint32_t kTeeTypeTdx = 0x00000081;
inline constexpr std::size_t kTdReportDataOffset = 568;  // of a v4 quote: 48-byte header + 520

// 384-byte SGX enclave report (the QE's report, or the body of an SGX quote).
struct EnclaveReport {
  std::array<std::uint8_t, 16> cpu_svn{};
  std::uint32_t misc_select = 0;
  std::array<std::uint8_t, 16> attributes{};
  std::array<std::uint8_t, 32> mr_enclave{};
  std::array<std::uint8_t, 32> mr_signer{};
  std::uint16_t isv_prod_id = 0;
  std::uint16_t isv_svn = 0;
  std::array<std::uint8_t, 64> report_data{};
  Bytes raw;  // the exact 384 bytes (what the PCK key signs)
};

// TD report body (TD10 = 584 bytes; TD15 adds tee_tcb_svn2 and mr_service_td = 648 bytes).
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
  // header (48 bytes)
  std::uint16_t version = 0;
  std::uint16_t attestation_key_type = 0;
  std::uint32_t tee_type = 0;
  std::array<std::uint8_t, 16> qe_vendor_id{};
  std::array<std::uint8_t, 20> user_data{};

  bool is_tdx() const { return tee_type == kTeeTypeTdx; }
  TdReport td;                    // when is_tdx()
  EnclaveReport sgx;              // when !is_tdx()
  std::size_t signed_length = 0;  // header + body: what the attestation key signs

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

// "SGX", "TDX" or "unknown (0x..)".
std::string tee_type_name(std::uint32_t tee_type);

}  // namespace pi::verify
