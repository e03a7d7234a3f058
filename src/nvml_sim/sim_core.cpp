// Simulated NVML internals: configuration, test PKI (OpenSSL, ECDSA P-384), SPDM report construction, replay.
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "crypto/hash.hpp"
#include "crypto/openssl.hpp"
#include "crypto/random.hpp"
#include "nvml_sim/sim.hpp"
#include "protocol/gpu_spdm.hpp"

namespace pi::nvml_sim {

namespace {

using Err = std::runtime_error;
namespace gpu = pi::protocol::gpu;  // the report layout (shared with the collector and the verifier)
using gpu::OpaqueType;

namespace ossl = pi::crypto::ossl;
using Pkey = ossl::PkeyPtr;
using Cert = ossl::X509Ptr;

std::string env(const char* name, const char* def = "") {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string(def);
}

unsigned env_uint(const char* name, unsigned def, unsigned max) {
  std::string v = env(name);
  if (v.empty()) return def;
  char* end = nullptr;
  unsigned long n = std::strtoul(v.c_str(), &end, 10);
  if (!end || *end != '\0' || n > max) {
    throw Err(std::string(name) + "=" + v + " is not a number from 0 to " + std::to_string(max));
  }
  return static_cast<unsigned>(n);
}

bool env_bool(const char* name, bool def) {
  std::string v = env(name);
  if (v.empty()) return def;
  if (v == "1" || v == "true" || v == "on" || v == "yes") return true;
  if (v == "0" || v == "false" || v == "off" || v == "no") return false;
  throw Err(std::string(name) + "=" + v + " is not a boolean (1/0, true/false, on/off)");
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Err("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

void write_file_atomic(const std::string& path, const std::string& data, mode_t mode) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0) throw Err("cannot write " + tmp + ": " + std::strerror(errno));
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n <= 0) {
      ::close(fd);
      throw Err("cannot write " + tmp + ": " + std::strerror(errno));
    }
    off += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) throw Err("cannot rename " + tmp + ": " + std::strerror(errno));
}

// issuer == nullptr: self-signed root. Valid from a day ago for 20 years, SHA-384 signed.
Cert make_cert(const EVP_PKEY& key, const std::vector<std::pair<std::string, std::string>>& subject, const X509* issuer,
               const EVP_PKEY* issuer_key, bool ca, int pathlen) {
  ossl::CertSpec spec;
  spec.subject = subject;
  const std::int64_t now = std::time(nullptr);
  spec.not_before = now - 86400;
  spec.not_after = now + 20LL * 365 * 86400;
  spec.ca = ca;
  spec.path_len = pathlen;
  spec.hash = ossl::Hash::Sha384;
  return ossl::make_cert(spec, key, issuer, issuer_key ? *issuer_key : key);
}

struct KeyCert {
  Pkey key;
  Cert cert;
  std::string key_pem, cert_pem;
  bool generated = false;
};

// Loads <dir>/<stem>.{key,cert}.pem when both exist and (for non-roots) the cert was issued by `issuer`; otherwise
// generates and writes them.
KeyCert load_or_make(const std::string& dir, const std::string& stem,
                     const std::vector<std::pair<std::string, std::string>>& subject, KeyCert* issuer, bool ca,
                     int pathlen) {
  const std::string kp = dir + "/" + stem + ".key.pem", cp = dir + "/" + stem + ".cert.pem";
  const bool must_regen = issuer && issuer->generated;
  if (!must_regen && file_exists(kp) && file_exists(cp)) {
    try {
      KeyCert kc;
      kc.key_pem = read_file(kp);
      kc.cert_pem = read_file(cp);
      kc.key = ossl::private_key_from_pem(kc.key_pem);
      kc.cert = ossl::cert_from_pem(kc.cert_pem);
      bool ok = X509_check_private_key(kc.cert.get(), kc.key.get()) == 1;
      if (issuer) ok = ok && X509_check_issued(issuer->cert.get(), kc.cert.get()) == X509_V_OK;
      ERR_clear_error();
      if (ok) return kc;
    } catch (const std::exception&) {
      // unreadable or inconsistent: regenerate below
    }
  }
  KeyCert kc;
  kc.key = ossl::generate_ec_key(ossl::Curve::P384);
  kc.cert = make_cert(*kc.key, subject, issuer ? issuer->cert.get() : nullptr, issuer ? issuer->key.get() : nullptr, ca,
                      pathlen);
  kc.key_pem = ossl::private_key_to_pem(*kc.key);
  kc.cert_pem = ossl::cert_to_pem(*kc.cert);
  write_file_atomic(kp, kc.key_pem, 0600);
  write_file_atomic(cp, kc.cert_pem, 0644);
  kc.generated = true;
  return kc;
}

class DirLock {
 public:
  explicit DirLock(const std::string& dir) {
    fd_ = ::open((dir + "/.lock").c_str(), O_RDWR | O_CREAT, 0600);
    if (fd_ < 0) throw Err("cannot open lock file in " + dir + ": " + std::strerror(errno));
    ::flock(fd_, LOCK_EX);
  }
  ~DirLock() {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

std::string uuid_from(ByteView seed) {
  auto d = crypto::sha256(seed);
  std::string h = to_hex(ByteView(d.data(), 16));
  return "GPU-" + h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" +
         h.substr(20, 12);
}

void put_le(Bytes& b, std::uint32_t v, int n) {
  for (int i = 0; i < n; ++i) b.push_back(static_cast<std::uint8_t>((v >> (8 * i)) & 0xff));
}

void put_tlv(Bytes& b, OpaqueType type, ByteView value) {
  put_le(b, static_cast<std::uint16_t>(type), 2);
  put_le(b, static_cast<std::uint32_t>(value.size()), 2);
  b.insert(b.end(), value.begin(), value.end());
}

Bytes hexb(std::string_view h) { return from_hex(h).value(); }

// Opaque fields copied from a recorded H100 report (NVIDIA attestation-sdk test data, tests/fixtures/nvidia/
// nvat_hopper_evidence.json) and from a recorded B200 report (nvat_gpu_blackwellAttestationReport.txt): VBIOS,
// board id, chip SKU, project, MSRS counts, CPR info, switch PDIs. Only identifying/dynamic fields are replaced.
constexpr std::string_view kMsrsHopper =
    "00000000010000000500000001000000010000000100000001000000010000000000000001000000000000008300000003000000000000"
    "000000000000000000000000000000000000000000000000000000000001000000020000000000000000000000010000000100000001000000"
    "000000000100000001000000010000000100000001000000020000000100000001000000010000000100000001000000010000000100000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000";
constexpr std::string_view kSwitchPdi =
    "77e911d843b7533a77e911d843b7533a7532679ebabee39a7532679ebabee39a77e911d843b7533a77e911d843b7533a8abd113c3ba2db03"
    "8abd113c3ba2db037532679ebabee39a7532679ebabee39a77e911d843b7533a8abd113c3ba2db032d7dec9de1936e662d7dec9de1936e66"
    "8abd113c3ba2db038abd113c3ba2db032d7dec9de1936e662d7dec9de1936e66";

}  // namespace

SimConfig config_from_env() {
  SimConfig c;
  std::string mode = env("PI_NVML_SIM_MODE", "testpki");
  if (mode == "testpki") {
    c.mode = SimConfig::Mode::TestPki;
  } else if (mode == "replay") {
    c.mode = SimConfig::Mode::Replay;
  } else {
    throw Err("PI_NVML_SIM_MODE=" + mode + " is neither testpki nor replay");
  }
  c.gpus = env_uint("PI_NVML_SIM_GPUS", 1, 8);
  c.ppcie = env_bool("PI_NVML_SIM_PPCIE", false);
  c.cc_on = env_bool("PI_NVML_SIM_CC", true);
  c.ready = env_bool("PI_NVML_SIM_READY", true);
  c.delay_ms = env_uint("PI_NVML_SIM_DELAY_MS", 0, 600000);
  std::string arch = env("PI_NVML_SIM_ARCH", "hopper");
  for (auto& ch : arch) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (arch != "HOPPER" && arch != "BLACKWELL")
    throw Err("PI_NVML_SIM_ARCH=" + arch + " is neither hopper nor blackwell");
  c.arch = arch;
  c.pki_dir = env("PI_NVML_SIM_PKI_DIR");
  if (c.pki_dir.empty()) {
    std::string tmp = env("TMPDIR", "/tmp");
    c.pki_dir = tmp + "/pi-nvml-sim-pki-" + std::to_string(::getuid());
  }
  c.replay_path = env("PI_NVML_SIM_REPLAY");
  if (c.mode == SimConfig::Mode::Replay && c.replay_path.empty()) {
    throw Err(
        "PI_NVML_SIM_MODE=replay needs PI_NVML_SIM_REPLAY=<evidence JSON>, e.g. "
        "tests/fixtures/nvidia/nvat_multi_gpu_hopper.json");
  }
  return c;
}

std::vector<SimGpu> make_gpus(const SimConfig& cfg) {
  std::vector<SimGpu> out;
  if (cfg.mode == SimConfig::Mode::Replay) {
    boost::system::error_code ec;
    auto v = boost::json::parse(read_file(cfg.replay_path), ec);
    if (ec) throw Err(cfg.replay_path + " is not JSON: " + ec.message());
    if (v.is_object() && v.as_object().contains("nvidia_payload") && v.as_object().at("nvidia_payload").is_string()) {
      v = boost::json::parse(v.as_object().at("nvidia_payload").as_string(), ec);
      if (ec) throw Err(cfg.replay_path + ": nvidia_payload is not JSON: " + ec.message());
    }
    if (v.is_object() && v.as_object().contains("evidence_list")) v = v.as_object().at("evidence_list");
    if (!v.is_array() || v.as_array().empty()) throw Err(cfg.replay_path + " holds no evidence list");
    unsigned i = 0;
    for (const auto& item : v.as_array()) {
      if (!item.is_object() || !item.as_object().contains("certificate") || !item.as_object().contains("evidence") ||
          !item.as_object().at("certificate").is_string() || !item.as_object().at("evidence").is_string()) {
        throw Err(cfg.replay_path + ": item " + std::to_string(i) + " lacks certificate/evidence strings");
      }
      const auto& o = item.as_object();
      auto cert = pi::base64_decode(o.at("certificate").as_string());
      auto ev = pi::base64_decode(o.at("evidence").as_string());
      if (!cert || !ev) throw Err(cfg.replay_path + ": item " + std::to_string(i) + " is not base64");
      if (!ev->empty() && std::isxdigit((*ev)[0]) && std::isxdigit((*ev)[1])) {  // base64 of hex text
        if (auto bin = from_hex(std::string_view(reinterpret_cast<const char*>(ev->data()), ev->size()))) ev = bin;
      }
      SimGpu g;
      g.cert_chain_pem.assign(cert->begin(), cert->end());
      while (!g.cert_chain_pem.empty() && g.cert_chain_pem.back() == '\0') g.cert_chain_pem.pop_back();
      g.replay_report = std::move(*ev);
      std::string arch = o.contains("arch") && o.at("arch").is_string() ? std::string(o.at("arch").as_string()) : "";
      g.arch_code = arch == "BLACKWELL" ? 10 : 9;
      g.name = std::string(arch == "BLACKWELL" ? "NVIDIA B200" : "NVIDIA H100 80GB HBM3") +
               " (SIMULATED: replayed recording)";
      g.uuid = uuid_from(as_bytes(g.cert_chain_pem));
      out.push_back(std::move(g));
      ++i;
    }
    return out;
  }

  // testpki
  ::mkdir(cfg.pki_dir.c_str(), 0700);
  struct stat st {};
  if (::stat(cfg.pki_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw Err("PI_NVML_SIM_PKI_DIR " + cfg.pki_dir + " is not a directory and cannot be created");
  }
  DirLock lock(cfg.pki_dir);
  const std::string o = "PI SIMULATED test PKI (not NVIDIA)";
  KeyCert root = load_or_make(cfg.pki_dir, "root", {{"O", o}, {"CN", "PI SIMULATED GPU Device Identity TEST ROOT"}},
                              nullptr, true, -1);
  KeyCert ica =
      load_or_make(cfg.pki_dir, "ica", {{"O", o}, {"CN", "PI SIMULATED GPU Device Identity ICA"}}, &root, true, 0);
  const bool bw = cfg.arch == "BLACKWELL";
  const std::string chip = bw ? "GB100" : "GH100";
  for (unsigned i = 0; i < cfg.gpus; ++i) {
    const std::string stem = std::string(bw ? "gpu-blackwell-" : "gpu-hopper-") + std::to_string(i);
    KeyCert leaf = load_or_make(
        cfg.pki_dir, stem,
        {{"O", o}, {"OU", "SIMULATED GPU " + std::to_string(i)}, {"CN", chip + " A01 GSP FMC LF SIMULATED"}}, &ica,
        false, -1);
    SimGpu g;
    g.arch_code = bw ? 10 : 9;
    g.name = std::string(bw ? "NVIDIA B200" : "NVIDIA H100 80GB HBM3") + " (SIMULATED: test PKI)";
    g.cert_chain_pem = leaf.cert_pem + ica.cert_pem + root.cert_pem;
    g.leaf_key_pem = leaf.key_pem;
    Bytes der = ossl::cert_to_der(*leaf.cert);
    g.uuid = uuid_from(der);
    auto fw = crypto::sha384(der);
    g.fwid.assign(fw.begin(), fw.end());
    out.push_back(std::move(g));
  }
  return out;
}

Bytes make_report(const SimConfig& cfg, const SimGpu& gpu, const std::uint8_t nonce[32]) {
  Bytes b;
  // GET_MEASUREMENTS request: SPDM 1.1, signature requested, all blocks, nonce, slot 0.
  b.insert(b.end(), {0x11, 0xE0, 0x01, 0xFF});
  b.insert(b.end(), nonce, nonce + gpu::kSpdmNonceSize);
  b.push_back(0x00);
  static_assert(4 + gpu::kSpdmNonceSize + 1 == gpu::kSpdmRequestSize);
  // MEASUREMENTS response header (as in the recorded H100/B200 reports).
  b.insert(b.end(), {0x11, 0x60, 0x00, 0x40});
  constexpr unsigned kBlocks = 64;
  b.push_back(kBlocks);
  put_le(b, kBlocks * (4 + 3 + 48), 3);
  const bool bw = gpu.arch_code == 10;
  for (unsigned i = 1; i <= kBlocks; ++i) {
    b.push_back(static_cast<std::uint8_t>(i));
    b.push_back(0x01);  // DMTF measurement specification
    put_le(b, 51, 2);   // measurement size
    b.push_back(0x01);  // DMTF value type (as recorded)
    put_le(b, 48, 2);   // SHA-384 digest
    std::string seed =
        std::string("PI SIMULATED GPU measurement ") + (bw ? "BLACKWELL " : "HOPPER ") + std::to_string(i);
    auto d = crypto::sha384(as_bytes(seed));
    b.insert(b.end(), d.begin(), d.end());
  }
  std::uint8_t rnonce[gpu::kSpdmNonceSize];
  crypto::random_fill(rnonce);
  b.insert(b.end(), rnonce, rnonce + sizeof rnonce);

  Bytes op;
  std::string drv = cfg.driver_version;
  drv.push_back('\0');
  // Identity fields as recorded from a B200 and an H100 report (hex), in the order the GPUs send them.
  struct IdentityFields {
    const char *vbios, *board, *sku, *sku_mod, *project, *project_sku, *project_sku_mod, *gpu_info;
  };
  static constexpr IdentityFields kBlackwell{
      "008800970f000000", "6f060000", "383836000000000000", "3000000000", "4735323500",
      "3032323000",       "3000",     "a001000000000000"};  // GPU_INFO: arch 0x1A0
  static constexpr IdentityFields kHopper{
      "00a5009601000000", "37040000", "383835000000000000", "3000000000", "4735323000",
      "3032303000",       "0000",     "8001000000000000"};  // GPU_INFO: arch 0x180
  const IdentityFields& id = bw ? kBlackwell : kHopper;
  put_tlv(op, OpaqueType::VbiosVersion, hexb(id.vbios));
  put_tlv(op, OpaqueType::BoardId, hexb(id.board));
  put_tlv(op, OpaqueType::ChipSku, hexb(id.sku));
  put_tlv(op, OpaqueType::ChipSkuMod, hexb(id.sku_mod));
  put_tlv(op, OpaqueType::Project, hexb(id.project));
  put_tlv(op, OpaqueType::ProjectSku, hexb(id.project_sku));
  put_tlv(op, OpaqueType::ProjectSkuMod, hexb(id.project_sku_mod));
  put_tlv(op, OpaqueType::DriverVersion, as_bytes(drv));
  put_tlv(op, OpaqueType::GpuInfo, hexb(id.gpu_info));
  put_tlv(op, OpaqueType::MsrsCnt, hexb(kMsrsHopper));
  put_tlv(op, OpaqueType::CprInfo, hexb(bw ? "00000400" : "00c00100"));
  put_tlv(op, OpaqueType::Nvdec0Status, hexb("55"));
  put_tlv(op, OpaqueType::Fwid, gpu.fwid);  // FWID: per simulated device
  const bool multi = cfg.gpus > 1;
  put_tlv(op, OpaqueType::ProtectedPcieStatus, Bytes{static_cast<std::uint8_t>(cfg.ppcie ? 0xAA : 0x55)});
  if (cfg.ppcie) put_tlv(op, OpaqueType::SwitchPdi, hexb(kSwitchPdi));
  put_tlv(op, OpaqueType::OpaqueDataVersion, hexb("0100"));
  std::uint8_t ff = cfg.ppcie ? 2 : multi ? 1 : 0;  // FEATURE_FLAG: SPT / MPT / PPCIE
  put_tlv(op, OpaqueType::FeatureFlag, Bytes{ff, 0x00});
  put_le(b, static_cast<std::uint32_t>(op.size()), 2);
  b.insert(b.end(), op.begin(), op.end());

  // Signature: ECDSA P-384 over SHA-384(request ‖ response-without-signature), as r ‖ s (48 bytes each).
  Pkey key = ossl::private_key_from_pem(gpu.leaf_key_pem);
  Bytes rs = ossl::ecdsa_sign_raw(ossl::Curve::P384, *key, b);
  b.insert(b.end(), rs.begin(), rs.end());
  return b;
}

}  // namespace pi::nvml_sim
