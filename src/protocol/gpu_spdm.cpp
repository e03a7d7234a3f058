#include "protocol/gpu_spdm.hpp"

#include <array>
#include <cctype>
#include <cstdio>

namespace pi::protocol::gpu {

namespace {

// Bounds-checked little-endian reader over the report; every read names the field it reads.
class Reader {
 public:
  explicit Reader(pi::ByteView data) : data_(data) {}
  std::size_t pos() const { return pos_; }
  std::size_t remaining() const { return data_.size() - pos_; }

  pi::ByteView take(std::size_t n, const char* what) {
    if (n > remaining()) {
      throw ParseError(std::string("truncated report: ") + what + " needs " + std::to_string(n) + " bytes at offset " +
                       std::to_string(pos_) + ", " + std::to_string(remaining()) + " left");
    }
    auto out = data_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  std::uint32_t le(std::size_t n, const char* what) {
    auto b = take(n, what);
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v |= static_cast<std::uint32_t>(b[i]) << (8 * i);
    return v;
  }
  std::uint8_t u8(const char* what) { return take(1, what)[0]; }

 private:
  pi::ByteView data_;
  std::size_t pos_ = 0;
};

std::string hex2(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%02X", v & 0xffu);
  return buf;
}

}  // namespace

const OpaqueField* SpdmReport::find(OpaqueType t) const {
  for (const auto& f : opaque)
    if (f.type == static_cast<std::uint16_t>(t)) return &f;
  return nullptr;
}

SpdmReport parse_spdm_report(pi::ByteView report) {
  SpdmReport r;
  if (report.size() < kSpdmRequestSize + 8 + kSpdmNonceSize + 2 + kP384SignatureSize) {
    throw ParseError("report too short (" + std::to_string(report.size()) +
                     " bytes) to hold an SPDM GET_MEASUREMENTS request and a signed response");
  }
  Reader rd(report);
  // --- request ---
  r.request_version = rd.u8("request SPDMVersion");
  std::uint8_t req_code = rd.u8("request code");
  if (req_code != 0xE0) throw ParseError("request code is 0x" + hex2(req_code) + ", expected 0xE0 (GET_MEASUREMENTS)");
  if (r.request_version < 0x11) {
    throw ParseError("request SPDM version 0x" + hex2(r.request_version) + " is older than 1.1");
  }
  r.request_param1 = rd.u8("request param1");
  r.request_param2 = rd.u8("request param2");
  if ((r.request_param1 & 0x01) == 0) throw ParseError("request did not ask for a signature (param1 bit 0 clear)");
  auto rn = rd.take(kSpdmNonceSize, "request nonce");
  r.request_nonce.assign(rn.begin(), rn.end());
  r.request_slot = rd.u8("request slot id");
  // --- response ---
  r.response_version = rd.u8("response SPDMVersion");
  std::uint8_t resp_code = rd.u8("response code");
  if (resp_code != 0x60) throw ParseError("response code is 0x" + hex2(resp_code) + ", expected 0x60 (MEASUREMENTS)");
  if (r.response_version != r.request_version) {
    throw ParseError("response SPDM version 0x" + hex2(r.response_version) + " differs from request version 0x" +
                     hex2(r.request_version));
  }
  r.response_param1 = rd.u8("response param1");
  r.response_param2 = rd.u8("response param2");
  std::uint8_t nblocks = rd.u8("NumberOfBlocks");
  std::uint32_t rec_len = rd.le(3, "MeasurementRecordLength");
  auto record = rd.take(rec_len, "measurement record");
  {
    Reader br(record);
    for (unsigned i = 0; i < nblocks; ++i) {
      MeasurementBlock b;
      b.index = br.u8("measurement block index");
      b.spec = br.u8("measurement specification");
      std::uint32_t msize = br.le(2, "measurement size");
      auto m = br.take(msize, "measurement");
      if (b.spec != 1) {
        throw ParseError("measurement block " + std::to_string(b.index) + " is not in DMTF format (spec " +
                         std::to_string(b.spec) + ")");
      }
      Reader mr(m);
      b.value_type = mr.u8("DMTF value type");
      std::uint32_t vsize = mr.le(2, "DMTF value size");
      auto v = mr.take(vsize, "DMTF value");
      if (mr.remaining() != 0) {
        throw ParseError("measurement block " + std::to_string(b.index) + " has " + std::to_string(mr.remaining()) +
                         " stray bytes after its DMTF value");
      }
      b.value.assign(v.begin(), v.end());
      r.blocks.push_back(std::move(b));
    }
    if (br.remaining() != 0) {
      throw ParseError("measurement record length " + std::to_string(rec_len) + " does not match its " +
                       std::to_string(nblocks) + " blocks (" + std::to_string(br.remaining()) + " bytes left over)");
    }
  }
  auto nonce = rd.take(kSpdmNonceSize, "response nonce");
  r.response_nonce.assign(nonce.begin(), nonce.end());
  std::uint32_t opaque_len = rd.le(2, "OpaqueLength");
  auto opaque = rd.take(opaque_len, "opaque data");
  {
    Reader orr(opaque);
    while (orr.remaining() > 0) {
      OpaqueField f;
      f.type = static_cast<std::uint16_t>(orr.le(2, "opaque field type"));
      std::uint32_t size = orr.le(2, "opaque field size");
      auto v = orr.take(size, "opaque field value");
      f.value.assign(v.begin(), v.end());
      r.opaque.push_back(std::move(f));
    }
  }
  std::size_t signed_len = rd.pos();
  auto sig = rd.take(kP384SignatureSize, "signature");
  if (rd.remaining() != 0) {
    throw ParseError(std::to_string(rd.remaining()) + " unexpected bytes after the 96-byte signature");
  }
  r.signature.assign(sig.begin(), sig.end());
  r.signed_data.assign(report.begin(), report.begin() + static_cast<std::ptrdiff_t>(signed_len));
  return r;
}

std::optional<std::string> opaque_string(const SpdmReport& r, OpaqueType t) {
  const auto* f = r.find(t);
  if (!f) return std::nullopt;
  std::string s;
  for (auto c : f->value) {
    if (c == 0) break;
    if (c < 0x20 || c > 0x7e) return std::nullopt;  // not printable ASCII: refuse rather than guess
    s.push_back(static_cast<char>(c));
  }
  return s;
}

std::optional<std::string> driver_version(const SpdmReport& r) {
  auto s = opaque_string(r, OpaqueType::DriverVersion);
  if (!s || s->empty()) return std::nullopt;
  return s;
}

std::optional<std::string> vbios_version(const SpdmReport& r) {
  // 8 bytes; NVIDIA prints the little-endian u32 of bytes 0..3 as four dotted hex pairs, then byte 4:
  // 00 9f 00 96 01 .. → 0x96009F00 → "96.00.9F.00" + ".01".
  const auto* f = r.find(OpaqueType::VbiosVersion);
  if (!f || f->value.size() < 5) return std::nullopt;
  const auto& v = f->value;
  return hex2(v[3]) + "." + hex2(v[2]) + "." + hex2(v[1]) + "." + hex2(v[0]) + "." + hex2(v[4]);
}

std::optional<std::uint32_t> gpu_arch_id(const SpdmReport& r) {
  const auto* f = r.find(OpaqueType::GpuInfo);
  if (!f || f->value.size() < 4) return std::nullopt;
  const auto& v = f->value;
  return static_cast<std::uint32_t>(v[0]) | (static_cast<std::uint32_t>(v[1]) << 8) |
         (static_cast<std::uint32_t>(v[2]) << 16) | (static_cast<std::uint32_t>(v[3]) << 24);
}

std::optional<std::uint16_t> feature_flag(const SpdmReport& r) {
  const auto* f = r.find(OpaqueType::FeatureFlag);
  if (!f || f->value.empty() || f->value.size() > 2) return std::nullopt;
  std::uint16_t v = f->value[0];
  if (f->value.size() == 2) v = static_cast<std::uint16_t>(v | (f->value[1] << 8));
  return v;
}

std::optional<bool> protected_pcie(const SpdmReport& r) {
  const auto* f = r.find(OpaqueType::ProtectedPcieStatus);
  if (!f || f->value.size() != 1) return std::nullopt;
  if (f->value[0] == 0xAA) return true;
  if (f->value[0] == 0x55) return false;
  return std::nullopt;
}

std::string feature_flag_name(std::uint16_t flag) {
  switch (flag) {
    case 0:
      return "SPT";
    case 1:
      return "MPT";
    case 2:
      return "PPCIE";
    default:
      return "UNKNOWN(" + std::to_string(flag) + ")";
  }
}

std::optional<std::string> arch_from_id(std::uint32_t arch_id) {
  switch (arch_id) {
    case 0x170:
      return "AMPERE";
    case 0x180:
      return "HOPPER";
    case 0x1A0:
    case 0x1B0:
      return "BLACKWELL";
    default:
      return std::nullopt;
  }
}

std::optional<std::string> arch_from_chip_name(std::string_view text) {
  // Chip names: G<family letter><digits>, e.g. GH100, GB100, GB202. Look for the token, not a loose substring.
  for (std::size_t i = 0; i + 5 <= text.size(); ++i) {
    if (text[i] != 'G') continue;
    if (i > 0 && std::isalnum(static_cast<unsigned char>(text[i - 1]))) continue;
    char fam = text[i + 1];
    bool digits = std::isdigit(static_cast<unsigned char>(text[i + 2])) &&
                  std::isdigit(static_cast<unsigned char>(text[i + 3])) &&
                  std::isdigit(static_cast<unsigned char>(text[i + 4]));
    if (!digits) continue;
    if (fam == 'H') return "HOPPER";
    if (fam == 'B') return "BLACKWELL";
    if (fam == 'A') return "AMPERE";
  }
  return std::nullopt;
}

}  // namespace pi::protocol::gpu
