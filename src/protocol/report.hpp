#pragma once
// The JSON documents the signer writes and the verifier reads, typed and parsed once:
//
//  * AttestationReport  — GET /v1/attestation/report (vllm-proxy shape, plus our own fields)
//  * GpuEvidence        — its GPU part: nvidia_payload (vllm-proxy's JSON *text*), gpu_evidence items,
//                         gpu_evidence_error / _info / _simulated / _notice
//  * NvidiaPayload      — the content of the nvidia_payload text
//  * SignatureResponse  — GET /v1/signature/{id}
//
// Writers build the struct and call to_json(): the keys, their order and their values are exactly what the
// proxy has always served (clients depend on them; tests/unit/protocol_report_test.cpp pins the text).
// Readers call parse(): every field is optional (reports from other servers — dstack's GetQuote answer, NEAR's
// cloud-api — omit some), but a field that is present with the wrong JSON type is an error (ShapeError naming the
// field), never skipped. parse never crashes on any JSON value. Unknown fields are ignored.
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "protocol/signing.hpp"

namespace pi::protocol {

// A document does not have the documented shape. what() = "<field>: <problem>"; field() is the JSON path of the
// offending field, e.g. "signing_public_key", "gpu_evidence[1].certificate", "nvidia_payload.evidence_list".
class ShapeError : public std::runtime_error {
 public:
  ShapeError(std::string field, const std::string& problem);
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

// The texts the proxy serves (part of the JSON clients see).
inline constexpr std::string_view kSimulatedNotice =
    "SIMULATED evidence (dev-tee and/or the simulated NVML): it is not produced by TEE hardware and proves nothing";
inline constexpr std::string_view kGpuSimulatedNotice =
    "SIMULATED GPU evidence (the project's simulated NVML, test PKI or replayed recordings): proves nothing";
inline constexpr std::string_view kGpuDisabledError =
    "GPU evidence collection is disabled on this server (--gpu-evidence off)";
inline constexpr std::string_view kGpuUnavailableError = "GPU evidence unavailable";

// ---------------------------------------------------------------------------------------------------------------
// GPU evidence

// One GPU's evidence. In the report's gpu_evidence array: {"arch","certificate","evidence","nonce"}; in
// nvidia_payload's evidence_list: {"certificate","evidence","arch"} (vllm-proxy; other tools add "nonce").
struct GpuEvidenceItem {
  std::string certificate;           // base64(PEM certificate chain, leaf first)
  std::string evidence;              // base64(SPDM GET_MEASUREMENTS request ‖ response)
  std::optional<std::string> arch;   // "HOPPER", "BLACKWELL", ... (a claim; the verifier detects it from evidence)
  std::optional<std::string> nonce;  // lowercase hex the evidence is bound to

  // gpu_evidence item: arch (when set), certificate, evidence, nonce (when set), in that order.
  boost::json::object to_json() const;
  // {certificate: string, evidence: string[, arch: string][, nonce: string]}. `field` names the item in errors.
  static GpuEvidenceItem parse(const boost::json::value& v, std::string_view field);
};

// vllm-proxy's nvidia_payload content: {"nonce", "evidence_list": [{certificate, evidence, arch}], "arch"}.
struct NvidiaPayload {
  std::optional<std::string> nonce;  // always set by our writer; absent in the bare-array form
  std::vector<GpuEvidenceItem> evidence_list;
  std::optional<std::string> arch;  // of the first GPU

  // The JSON text exactly as Python's json.dumps writes it (", " and ": " separators, ensure_ascii escaping):
  // {"nonce": "…", "evidence_list": [{"certificate": "…", "evidence": "…", "arch": "…"}, …], "arch": "…"}.
  // Items carry certificate, evidence and arch (when set) only; "nonce"/"arch" are written when set.
  std::string to_text() const;

  // One evidence_list entry as read: the item, or why it does not decode (the verifier reports GPUs one by one).
  struct Entry {
    std::optional<GpuEvidenceItem> item;
    std::string error;  // ShapeError::what() when !item
  };
  struct Decoded {
    std::optional<std::string> nonce;
    std::optional<std::string> arch;
    std::vector<Entry> entries;
    bool from_string = false;  // the value was a JSON string holding the JSON (vllm-proxy), not a JSON value
  };
  // Accepts a JSON string holding JSON (NUL characters dropped), an object {"evidence_list": [...][, "nonce"]
  // [, "arch"]} or a bare array of items. Throws ShapeError for the envelope (field "nvidia_payload…"); each item's
  // own problem is recorded in its Entry. An empty list is not an error here.
  static Decoded decode(const boost::json::value& v);
  // decode(), then every item must decode: the first bad one throws.
  static NvidiaPayload parse(const boost::json::value& v);
};

// The GPU part of an attestation report.
struct GpuEvidence {
  // nvidia_payload: null (no evidence) or the NvidiaPayload JSON *text* (a string, our writer). Readers also accept
  // an object or an array (other servers); any other type is a ShapeError. Decode with NvidiaPayload::decode.
  boost::json::value nvidia_payload;
  std::optional<std::vector<GpuEvidenceItem>> items;  // gpu_evidence: array, or null (nullopt)
  std::optional<std::string> error;                   // gpu_evidence_error: null (nullopt) when evidence is present
  std::optional<boost::json::object> info;            // gpu_evidence_info, written when set
  bool simulated = false;                             // gpu_evidence_simulated: written (as true) only when true
  std::string notice;                                 // gpu_evidence_notice, written when simulated

  // No evidence because collection is off (--gpu-evidence off): payload and items null, error kGpuDisabledError.
  static GpuEvidence disabled();
  // Appends nvidia_payload, gpu_evidence, gpu_evidence_error, [gpu_evidence_info], [gpu_evidence_simulated,
  // gpu_evidence_notice] to `o`, in that order (assigning keys already in `o` in place).
  void write_to(boost::json::object& o) const;
  // Reads those fields of a report object (absent → null / nullopt / false).
  static GpuEvidence parse_from(const boost::json::object& report);
};

// ---------------------------------------------------------------------------------------------------------------
// GET /v1/attestation/report

struct AttestationReport {
  std::optional<std::string> signing_address;       // "0x…" EIP-55 (ecdsa) or public-key hex (ed25519)
  std::optional<std::string> signing_algo;          // "ecdsa" | "ed25519" as stated (the verifier judges it)
  std::optional<std::string> signing_public_key;    // ecdsa: 64-byte key hex; ed25519: public key hex
  std::optional<std::string> tls_cert_fingerprint;  // NEAR cloud-api only (never written by us): 32 bytes hex
  std::optional<std::string> request_nonce;         // 64 hex
  std::optional<std::string> intel_quote;           // quote hex
  // quote: hex string (ours, = intel_quote) or dstack's GetQuote answer {"quote", "event_log", …} (an object).
  std::optional<boost::json::value> quote;
  // event_log: the agent's event log as JSON (array/object), or a string (its text when that is not JSON; other
  // servers send JSON strings or Python literals). null is accepted when reading.
  std::optional<boost::json::value> event_log;
  std::optional<std::string> vm_config;
  // info: dstack Info — an object (ours), or a string holding JSON / a Python literal (other servers); or null.
  std::optional<boost::json::value> info;
  GpuEvidence gpu;
  bool simulated = false;
  std::optional<std::string> simulated_notice;  // ours: kSimulatedNotice when simulated
  std::optional<std::string> instance_id;  // ours: the replica's dstack instance_id (also in info and the event log)

  // event_log from the agent's text: its JSON when it parses, else the text itself as a string.
  static boost::json::value event_log_from_text(std::string_view agent_text);

  // The proxy's JSON: signing_address, signing_algo, signing_public_key, [tls_cert_fingerprint], request_nonce,
  // intel_quote, quote, event_log, vm_config, info, instance_id (each when set), then GpuEvidence::write_to, simulated,
  // [simulated_notice], all_attestations = [the same object without all_attestations].
  boost::json::object to_json() const;
  // Throws ShapeError when `v` is not an object or a field has the wrong type (all_attestations, when present,
  // must be an array; its content is not read).
  static AttestationReport parse(const boost::json::value& v);
};

// ---------------------------------------------------------------------------------------------------------------
// GET /v1/signature/{id}?signing_algo=…

struct SignatureResponse {
  std::optional<std::string> text;             // request_hash ":" response_hash
  std::optional<std::string> signature;        // the signature for signing_algo
  std::optional<std::string> signing_address;  // the signing address for signing_algo
  std::optional<std::string> signing_algo;     // "ecdsa" | "ed25519"
  std::optional<std::string> request_hash;
  std::optional<std::string> response_hash;
  std::optional<std::string> ecdsa_signature;  // "0x" + 130 hex
  std::optional<std::string> ed25519_signature;
  std::optional<std::string> ecdsa_signing_address;
  std::optional<std::string> ed25519_signing_address;
  // Ours: the TEE instance (dstack instance_id) that served the answer. Not signed (the signed text is
  // vllm-proxy's); an auditor matches it against the instance-id event of that replica's attestation.
  std::optional<std::string> instance_id;

  // What the proxy serves for a record (every field set; instance_id when not empty).
  static SignatureResponse make(const SignatureRecord& r, const SigningIdentity& id, SigningAlgo algo,
                                std::string_view instance_id = {});
  // text, signature, signing_address, signing_algo, request_hash, response_hash, ecdsa_signature,
  // ed25519_signature, ecdsa_signing_address, ed25519_signing_address, instance_id (each when set), in
  // that order.
  boost::json::object to_json() const;
  // Throws ShapeError when `v` is not an object or a field is present but not a string.
  static SignatureResponse parse(const boost::json::value& v);

  // The fields for `algo`: <algo>_signature, else signature (vllm-proxy records carry only the latter), and
  // <algo>_signing_address, else signing_address.
  std::optional<std::string> signature_for(SigningAlgo algo) const;
  std::optional<std::string> signing_address_for(SigningAlgo algo) const;
  // Empty when consistent; else why: the record's generic signature / signing_address disagree with the
  // algorithm-specific fields of its own signing_algo (addresses compared case-insensitively).
  std::string inconsistency() const;
};

}  // namespace pi::protocol
