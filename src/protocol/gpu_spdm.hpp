#pragma once
// NVIDIA GPU attestation report = SPDM 1.1 GET_MEASUREMENTS request ‖ MEASUREMENTS response.
// Pure parsing (no crypto): layouts from DMTF DSP0274 (SPDM 1.1) and NVIDIA's opaque-data TLVs.
// The one description of the report shared by the collector (src/tee: architecture from a fresh
// report), the verifier (src/verify) and the simulated NVML (src/nvml_sim builds reports with it).
//
//   request  (37 bytes): version(1)=0x11, code(1)=0xE0, param1(1) bit0=signature requested, param2(1)=0xFF (all),
//                        nonce(32), slot_id(1)
//   response:            version(1), code(1)=0x60, param1(1), param2(1), number_of_blocks(1), record_length(3, LE),
//                        measurement record, nonce(32), opaque_length(2, LE), opaque data, signature(96 = r‖s, P-384)
//   measurement block:   index(1), spec(1)=1 (DMTF), size(2, LE), then DMTF: value_type(1), value_size(2, LE), value
//   opaque data:         repeated TLV: type(2, LE), size(2, LE), value
// The signature covers SHA-384(request ‖ response-without-signature).
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/bytes.hpp"

namespace pi::protocol::gpu {

// Thrown by the parsers on malformed input; the message says what and where.
struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline constexpr std::size_t kSpdmRequestSize = 37;
inline constexpr std::size_t kSpdmNonceSize = 32;
inline constexpr std::size_t kP384SignatureSize = 96;

// NVIDIA opaque-data field ids (nvtrust / attestation-sdk numbering).
enum class OpaqueType : std::uint16_t {
  CertIssuerName = 1,
  CertAuthorityKeyId = 2,
  DriverVersion = 3,
  GpuInfo = 4,
  Sku = 5,
  VbiosVersion = 6,
  ManufacturerId = 7,
  TamperDetection = 8,
  Smc = 9,
  Vpr = 10,
  Nvdec0Status = 11,
  MsrsCnt = 12,
  CprInfo = 13,
  BoardId = 14,
  ChipSku = 15,
  ChipSkuMod = 16,
  Project = 17,
  ProjectSku = 18,
  ProjectSkuMod = 19,
  Fwid = 20,
  ProtectedPcieStatus = 21,
  SwitchPdi = 22,
  FloorsweptPorts = 23,
  PositionId = 24,
  LockSwitchStatus = 25,
  GpuLinkConn = 32,
  SysEnableStatus = 33,
  OpaqueDataVersion = 34,
  ChipInfo = 35,
  FeatureFlag = 36,
};

struct MeasurementBlock {
  std::uint8_t index = 0;
  std::uint8_t spec = 0;        // 1 = DMTF
  std::uint8_t value_type = 0;  // DMTFSpecMeasurementValueType
  pi::Bytes value;
};

struct OpaqueField {
  std::uint16_t type = 0;
  pi::Bytes value;
};

struct SpdmReport {
  // request
  std::uint8_t request_version = 0;
  std::uint8_t request_param1 = 0;
  std::uint8_t request_param2 = 0;
  pi::Bytes request_nonce;  // 32 bytes: the verifier's challenge
  std::uint8_t request_slot = 0;
  // response
  std::uint8_t response_version = 0;
  std::uint8_t response_param1 = 0;
  std::uint8_t response_param2 = 0;
  std::vector<MeasurementBlock> blocks;
  pi::Bytes response_nonce;  // 32 bytes chosen by the GPU
  std::vector<OpaqueField> opaque;
  pi::Bytes signature;    // 96 bytes r‖s
  pi::Bytes signed_data;  // request ‖ response without the signature (what the signature covers)

  const OpaqueField* find(OpaqueType t) const;
};

// Parses request ‖ response. Throws ParseError with a precise message on any inconsistency
// (short buffer, wrong codes, lengths that do not add up, trailing bytes).
SpdmReport parse_spdm_report(pi::ByteView report);

// Decoded opaque values (nullopt when the field is absent or malformed).
std::optional<std::string> driver_version(const SpdmReport& r);  // "550.90.07"
std::optional<std::string> vbios_version(const SpdmReport& r);   // "96.00.9F.00.01" (NVIDIA's notation)
std::optional<std::uint32_t> gpu_arch_id(const SpdmReport& r);   // GPU_INFO low 32 bits, e.g. 0x180 (GH100)
std::optional<std::uint16_t> feature_flag(const SpdmReport& r);  // 0 SPT, 1 MPT, 2 PPCIE
std::optional<bool> protected_pcie(const SpdmReport& r);         // PROTECTED_PCIE_STATUS: 0xAA on, 0x55 off
std::optional<std::string> opaque_string(const SpdmReport& r, OpaqueType t);  // NUL-trimmed ASCII
std::string feature_flag_name(std::uint16_t flag);                            // "SPT" / "MPT" / "PPCIE" / "UNKNOWN(n)"

// Architecture name from the NVIDIA chip architecture id carried in GPU_INFO
// (0x170 AMPERE, 0x180 HOPPER, 0x1A0 / 0x1B0 BLACKWELL); nullopt when unknown.
std::optional<std::string> arch_from_id(std::uint32_t arch_id);
// Architecture name from a chip name in a certificate subject ("GH100" → HOPPER, "GB100"/"GB20x" → BLACKWELL).
std::optional<std::string> arch_from_chip_name(std::string_view text);

}  // namespace pi::protocol::gpu
