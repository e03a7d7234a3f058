#include "verify/response.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "crypto/eth.hpp"
#include "crypto/hash.hpp"
#include "protocol/report.hpp"
#include "protocol/signing.hpp"

namespace pi::verify {
namespace {

namespace json = boost::json;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (s.rfind("0x", 0) == 0) s = s.substr(2);
  return s;
}

void add(Report& r, std::string id, std::string title, Status s, std::string detail) {
  r.add(Check{Group::Response, std::move(id), std::move(title), s, std::move(detail)});
}

// n/2 for secp256k1, big-endian: a signature with s above it is the high-s twin of a valid low-s signature.
constexpr std::uint8_t kHalfOrder[32] = {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                         0xff, 0xff, 0xff, 0xff, 0xff, 0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4,
                                         0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0};

}  // namespace

std::string ecdsa_signature_form_problem(ByteView sig, const ResponseOptions& options) {
  if (sig.size() != 65) return "the signature is not 65 bytes (r || s || v)";
  if (std::lexicographical_compare(kHalfOrder, kHalfOrder + 32, sig.begin() + 32, sig.begin() + 64))
    return "s is in the upper half of the curve order (high-s): the proxy always normalises s to the lower half "
           "(EIP-2), so this is not a signature it produced";
  const std::uint8_t v = sig[64];
  if (v == 27 || v == 28) return {};
  if ((v == 0 || v == 1) && options.accept_ecdsa_v01) return {};
  if (v == 0 || v == 1)
    return fmt::format("v is {} (a bare recovery id), not 27/28 as the proxy writes it; --accept-ecdsa-v01 accepts it",
                       v);
  return fmt::format("v is {}, not 27 or 28", v);
}

void check_response(std::string_view request_bytes, std::string_view response_bytes, const json::value& doc,
                    std::string_view algo_s, const std::optional<AttestationOutcome>& att, Report& rep) {
  check_response(request_bytes, response_bytes, doc, algo_s, att, ResponseOptions{}, rep);
}

void check_response(std::string_view request_bytes, std::string_view response_bytes, const json::value& doc,
                    std::string_view algo_s, const std::optional<AttestationOutcome>& att,
                    const ResponseOptions& options, Report& rep) {
  const char* t_req = "sha256 of the exact request bytes equals the signed request_hash";
  const char* t_res = "sha256 of the exact response bytes equals the signed response_hash";
  const char* t_text = "the signed text is request_hash:response_hash";
  const char* t_sig = "the signature over the text verifies for the stated signing key";
  const char* t_bound = "the signing key is the one bound in a freshly verified attestation";

  std::string req_hash = to_hex(crypto::sha256(request_bytes));
  std::string res_hash = to_hex(crypto::sha256(response_bytes));
  rep.fact("response.request_sha256", req_hash);
  rep.fact("response.response_sha256", res_hash);
  // Parsed once: a field of the wrong type fails here, naming the field.
  protocol::SignatureResponse sig;
  try {
    sig = protocol::SignatureResponse::parse(doc);
  } catch (const protocol::ShapeError& e) {
    add(rep, "response.record", "every field of the signature record has the documented JSON type", Status::Fail,
        e.what());
    return;
  }
  const auto& s_req = sig.request_hash;
  const auto& s_res = sig.response_hash;
  const auto& text = sig.text;
  add(rep, "response.request_hash", t_req, s_req && lower(*s_req) == req_hash ? Status::Pass : Status::Fail,
      s_req ? (lower(*s_req) == req_hash ? req_hash
                                         : "request file hashes to " + req_hash + ", the proxy signed " + *s_req)
            : "the signature record has no request_hash");
  add(rep, "response.response_hash", t_res, s_res && lower(*s_res) == res_hash ? Status::Pass : Status::Fail,
      s_res ? (lower(*s_res) == res_hash ? res_hash
                                         : "response file hashes to " + res_hash + ", the proxy signed " + *s_res +
                                               ": these are not the bytes that were signed (tampered or re-serialised)")
            : "the signature record has no response_hash");
  std::string want_text = protocol::signed_text(s_req.value_or(""), s_res.value_or(""));
  add(rep, "response.text", t_text, text && *text == want_text ? Status::Pass : Status::Fail,
      text ? (*text == want_text ? "text = request_hash:response_hash" : "text '" + *text + "' is not " + want_text)
           : "the signature record has no text");

  auto algo = protocol::parse_signing_algo(algo_s);
  std::string signer;  // address / public key whose signature verified, lowercase without 0x; empty if none
  if (!algo) {
    add(rep, "response.signature", t_sig, Status::Fail, "unknown signing algorithm '" + std::string(algo_s) + "'");
  } else if (auto bad = sig.inconsistency(); !bad.empty()) {
    // A record that names one key in signing_address and another in <algo>_signing_address (or two signatures)
    // is not a statement about one signer: which of the two a client reads is undefined.
    add(rep, "response.signature", t_sig, Status::Fail, bad);
  } else if (*algo == protocol::SigningAlgo::Ecdsa) {
    auto s = sig.signature_for(*algo);
    auto stated = sig.signing_address_for(*algo);
    auto raw = s ? from_hex(*s) : std::nullopt;
    std::string form = raw && raw->size() == 65 ? ecdsa_signature_form_problem(*raw, options) : std::string();
    auto rec = s && text && form.empty() ? protocol::recover_ecdsa_signer(*text, *s) : std::nullopt;
    if (!form.empty()) {
      add(rep, "response.signature", t_sig, Status::Fail, form);
    } else if (!rec) {
      add(rep, "response.signature", t_sig, Status::Fail, "no valid 65-byte ECDSA signature to recover a key from");
    } else {
      const std::string recovered = lower(to_hex(*rec));
      bool ok = stated && lower(*stated) == recovered;
      if (ok) signer = recovered;
      add(rep, "response.signature", t_sig, ok ? Status::Pass : Status::Fail,
          ok ? "EIP-191 signature recovers " + crypto::eth_checksum_address(*rec)
             : "signature recovers " + crypto::eth_checksum_address(*rec) + ", not the stated signing address " +
                   stated.value_or("(none)"));
    }
  } else {
    auto s = sig.signature_for(*algo);
    auto pk = sig.signing_address_for(*algo);
    bool ok = s && pk && text && protocol::verify_ed25519(*text, *s, *pk);
    if (ok) signer = lower(*pk);
    add(rep, "response.signature", t_sig, ok ? Status::Pass : Status::Fail,
        ok ? "Ed25519 signature verifies with " + *pk : "the Ed25519 signature does not verify with the stated key");
  }

  // Bound by a verified attestation?
  if (!att) {
    add(rep, "response.key_bound", t_bound, Status::Fail, "no attestation could be fetched and verified");
    return;
  }
  if (signer.empty()) {
    add(rep, "response.key_bound", t_bound, Status::Fail, "the signature did not verify, so no key signed this");
    return;
  }
  std::string attested = lower(att->signing_address);
  bool same_key = signer == attested;
  bool att_ok = att->report.ok() && att->bound;
  if (same_key && att_ok) {
    add(rep, "response.key_bound", t_bound, Status::Pass,
        "signer " + att->signing_address + " is bound by the attestation checked above (fresh nonce)");
  } else if (!same_key) {
    add(rep, "response.key_bound", t_bound, Status::Fail,
        "signer " + (signer.empty() ? std::string("(unknown)") : signer) + " is not the attested signing address " +
            att->signing_address);
  } else {
    add(rep, "response.key_bound", t_bound, Status::Fail,
        "the signer matches the report's signing_address, but the attestation itself did not verify (see the "
        "hardware/binding/code checks above), so nothing proves where this key lives");
  }
}

}  // namespace pi::verify
