// The typed report shapes (protocol/report.hpp): to_json() writes exactly the JSON the proxy has always served,
// parse() reads it back, names the field of every type error and never crashes.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>
#include <utility>

#include "crypto/hash.hpp"
#include "protocol/report.hpp"
#include "protocol/signing.hpp"
#include "protocol/wire.hpp"
#include "tee/gpu_evidence.hpp"

namespace pi::protocol {
namespace {

namespace json = boost::json;

// The inputs of one attestation (what the proxy's attestation handler has at hand).
struct Inputs {
  std::string address = "0xAbCdEf0123456789abcdef0123456789ABCDEF01";
  std::string algo = "ecdsa";
  std::string pubkey = std::string(128, 'a');
  std::string nonce = std::string(64, '1');
  std::string quote_hex = "0400020081";
  std::string event_log_text = R"([{"imr":0,"event_type":1,"digest":"ab","event":"","event_payload":"00"}])";
  std::string vm_config = R"({"os_image_hash":"ff"})";
  json::object info = {{"app_id", "abc"}, {"tcb_info", R"({"app_compose":"{}"})"}};
  std::optional<tee::GpuEvidenceResult> gpu;  // nullopt: --gpu-evidence off
  bool tee_simulated = false;
};

// The attestation JSON exactly as src/server/proxy.cpp built it before the typed report existed (kept here as the
// reference the typed writer must reproduce).
json::object legacy_report(const Inputs& in) {
  json::object report;
  const bool simulated = in.tee_simulated || (in.gpu && in.gpu->simulated);
  report["signing_address"] = in.address;
  report["signing_algo"] = in.algo;
  report["signing_public_key"] = in.pubkey;
  report["request_nonce"] = in.nonce;
  report["intel_quote"] = in.quote_hex;
  report["quote"] = in.quote_hex;
  boost::system::error_code jec;
  auto ev = json::parse(in.event_log_text, jec);
  report["event_log"] = jec ? json::value(in.event_log_text) : std::move(ev);
  report["vm_config"] = in.vm_config;
  report["info"] = in.info;
  if (in.gpu) {
    const auto& g = *in.gpu;
    if (g.ok()) {
      report["nvidia_payload"] = g.nvidia_payload;
      json::array items;
      for (const auto& it : g.gpu_evidence)
        items.push_back(json::object{
            {"arch", *it.arch}, {"certificate", it.certificate}, {"evidence", it.evidence}, {"nonce", *it.nonce}});
      report["gpu_evidence"] = std::move(items);
      report["gpu_evidence_error"] = nullptr;
    } else {
      report["nvidia_payload"] = nullptr;
      report["gpu_evidence"] = nullptr;
      report["gpu_evidence_error"] = g.error.empty() ? std::string("GPU evidence unavailable") : g.error;
    }
    if (!g.info.empty()) report["gpu_evidence_info"] = g.info;
    if (g.simulated) {
      report["gpu_evidence_simulated"] = true;
      report["gpu_evidence_notice"] =
          "SIMULATED GPU evidence (the project's simulated NVML, test PKI or replayed recordings): proves nothing";
    }
  } else {
    report["nvidia_payload"] = nullptr;
    report["gpu_evidence"] = nullptr;
    report["gpu_evidence_error"] = "GPU evidence collection is disabled on this server (--gpu-evidence off)";
  }
  report["simulated"] = simulated;
  if (simulated)
    report["simulated_notice"] =
        "SIMULATED evidence (dev-tee and/or the simulated NVML): it is not produced by TEE hardware and "
        "proves nothing";
  json::object self = report;
  report["all_attestations"] = json::array{std::move(self)};
  return report;
}

// The same inputs through the typed report, the way the proxy fills it.
AttestationReport typed_report(const Inputs& in) {
  AttestationReport r;
  const bool simulated = in.tee_simulated || (in.gpu && in.gpu->simulated);
  r.signing_address = in.address;
  r.signing_algo = in.algo;
  r.signing_public_key = in.pubkey;
  r.request_nonce = in.nonce;
  r.intel_quote = in.quote_hex;
  r.quote = json::value(in.quote_hex);
  r.event_log = AttestationReport::event_log_from_text(in.event_log_text);
  r.vm_config = in.vm_config;
  r.info = in.info;
  if (in.gpu)
    in.gpu->apply_to(r);
  else
    r.gpu = GpuEvidence::disabled();
  r.simulated = simulated;
  if (simulated) r.simulated_notice = std::string(kSimulatedNotice);
  return r;
}

tee::NvmlCollection two_gpus(bool simulated) {
  tee::NvmlCollection c;
  c.driver_version = "550.90.07";
  c.cc.environment = 1;
  c.cc.cc_enabled = true;
  c.cc.gpus_ready = true;
  c.cc.settings_known = true;
  c.cc.multi_gpu_mode = 1;
  c.cc.ppcie = true;
  c.simulated = simulated;
  for (unsigned i = 0; i < 2; ++i) {
    tee::NvmlGpu g;
    g.index = i;
    g.uuid = "GPU-" + std::to_string(i);
    g.name = "NVIDIA H100";
    g.arch = "HOPPER";
    g.report = Bytes{static_cast<std::uint8_t>(0x10 + i), 0x20};
    g.cert_chain_pem = "PEM" + std::to_string(i);
    c.gpus.push_back(std::move(g));
  }
  return c;
}

Nonce nonce_of(char hexdigit) { return *parse_nonce(std::string(64, hexdigit)); }

TEST(ProtocolReport, GpuDisabledReportIsByteForByteTheProxysJson) {
  Inputs in;
  // Hand-written: the exact text the proxy serves for these inputs.
  const std::string body =
      R"("signing_address":"0xAbCdEf0123456789abcdef0123456789ABCDEF01","signing_algo":"ecdsa",)"
      R"("signing_public_key":")" +
      std::string(128, 'a') + R"(","request_nonce":")" + std::string(64, '1') +
      R"(","intel_quote":"0400020081","quote":"0400020081",)"
      R"("event_log":[{"imr":0,"event_type":1,"digest":"ab","event":"","event_payload":"00"}],)"
      R"("vm_config":"{\"os_image_hash\":\"ff\"}",)"
      R"("info":{"app_id":"abc","tcb_info":"{\"app_compose\":\"{}\"}"},)"
      R"("nvidia_payload":null,"gpu_evidence":null,)"
      R"J("gpu_evidence_error":"GPU evidence collection is disabled on this server (--gpu-evidence off)",)J"
      R"("simulated":false)";
  const std::string expected = "{" + body + R"(,"all_attestations":[{)" + body + "}]}";
  EXPECT_EQ(json::serialize(typed_report(in).to_json()), expected);
  EXPECT_EQ(json::serialize(legacy_report(in)), expected);
}

TEST(ProtocolReport, SimulatedGpuReportIsByteForByteTheProxysJson) {
  Inputs in;
  in.event_log_text = "not json";  // the agent's text is kept as a string
  in.tee_simulated = true;
  in.gpu = tee::GpuEvidenceCollector::build_result(two_gpus(true), nonce_of('1'));
  const std::string n = std::string(64, '1');
  // base64("PEM0") = UEVNMA==, base64(10 20) = ECA=, base64("PEM1") = UEVNMQ==, base64(11 20) = ESA=
  const std::string payload_text =
      R"({"nonce": ")" + n +
      R"(", "evidence_list": [{"certificate": "UEVNMA==", "evidence": "ECA=", "arch": "HOPPER"}, )"
      R"({"certificate": "UEVNMQ==", "evidence": "ESA=", "arch": "HOPPER"}], "arch": "HOPPER"})";
  ASSERT_EQ(in.gpu->nvidia_payload, payload_text);
  std::string payload_json;  // the text as a JSON string literal
  for (char c : payload_text) payload_json += c == '"' ? std::string("\\\"") : std::string(1, c);
  const std::string body =
      R"("signing_address":"0xAbCdEf0123456789abcdef0123456789ABCDEF01","signing_algo":"ecdsa",)"
      R"("signing_public_key":")" +
      std::string(128, 'a') + R"(","request_nonce":")" + n +
      R"(","intel_quote":"0400020081","quote":"0400020081","event_log":"not json",)"
      R"("vm_config":"{\"os_image_hash\":\"ff\"}",)"
      R"("info":{"app_id":"abc","tcb_info":"{\"app_compose\":\"{}\"}"},)"
      R"("nvidia_payload":")" +
      payload_json + R"(","gpu_evidence":[{"arch":"HOPPER","certificate":"UEVNMA==","evidence":"ECA=","nonce":")" + n +
      R"("},{"arch":"HOPPER","certificate":"UEVNMQ==","evidence":"ESA=","nonce":")" + n +
      R"("}],"gpu_evidence_error":null,)"
      R"("gpu_evidence_info":{"driver_version":"550.90.07","cc_environment":1,"dev_tools_mode":false,)"
      R"("ppcie":true,"multi_gpu_mode":1,"simulated":true,"gpus":[{"index":0,"uuid":"GPU-0","name":"NVIDIA H100",)"
      R"("arch":"HOPPER"},{"index":1,"uuid":"GPU-1","name":"NVIDIA H100","arch":"HOPPER"}]},)"
      R"("gpu_evidence_simulated":true,)"
      R"("gpu_evidence_notice":"SIMULATED GPU evidence (the project's simulated NVML, test PKI or replayed )"
      R"(recordings): proves nothing","simulated":true,)"
      R"("simulated_notice":"SIMULATED evidence (dev-tee and/or the simulated NVML): it is not produced by TEE )"
      R"(hardware and proves nothing")";
  const std::string expected = "{" + body + R"(,"all_attestations":[{)" + body + "}]}";
  EXPECT_EQ(json::serialize(typed_report(in).to_json()), expected);
  EXPECT_EQ(json::serialize(legacy_report(in)), expected);
}

TEST(ProtocolReport, TypedWriterEqualsTheLegacyWriterForEveryGpuOutcome) {
  std::vector<std::optional<tee::GpuEvidenceResult>> outcomes;
  outcomes.emplace_back(std::nullopt);
  outcomes.emplace_back(tee::GpuEvidenceCollector::build_result(two_gpus(false), nonce_of('2')));
  outcomes.emplace_back(tee::GpuEvidenceCollector::build_result(two_gpus(true), nonce_of('3')));
  auto cc_off = two_gpus(false);
  cc_off.error_kind = tee::NvmlErrorKind::CcOff;
  cc_off.error = "confidential computing is off";
  outcomes.emplace_back(tee::GpuEvidenceCollector::build_result(cc_off, nonce_of('4')));
  tee::GpuEvidenceResult timeout;  // no info, no error text
  timeout.status = tee::GpuEvidenceStatus::Timeout;
  outcomes.emplace_back(timeout);
  for (bool tee_sim : {false, true})
    for (const auto& g : outcomes) {
      Inputs in;
      in.tee_simulated = tee_sim;
      in.gpu = g;
      in.algo = "ed25519";
      in.address = std::string(64, 'e');
      in.pubkey = in.address;
      const auto typed = typed_report(in).to_json();
      EXPECT_EQ(json::serialize(typed), json::serialize(legacy_report(in)));
      // parse(to_json()) round-trips
      EXPECT_EQ(json::serialize(AttestationReport::parse(typed).to_json()), json::serialize(typed));
      // the collector's JSON writer is the typed one
      if (g) {
        json::object via_json, via_type;
        g->apply_to(via_json);
        g->to_protocol().write_to(via_type);
        EXPECT_EQ(json::serialize(via_json), json::serialize(via_type));
      }
    }
}

TEST(ProtocolReport, ParseReadsEveryField) {
  Inputs in;
  in.gpu = tee::GpuEvidenceCollector::build_result(two_gpus(true), nonce_of('1'));
  in.tee_simulated = true;
  auto r = AttestationReport::parse(json::parse(json::serialize(typed_report(in).to_json())));
  EXPECT_EQ(r.signing_address, in.address);
  EXPECT_EQ(r.signing_algo, "ecdsa");
  EXPECT_EQ(r.signing_public_key, in.pubkey);
  EXPECT_EQ(r.request_nonce, in.nonce);
  EXPECT_EQ(r.intel_quote, in.quote_hex);
  ASSERT_TRUE(r.quote && r.quote->is_string());
  ASSERT_TRUE(r.event_log && r.event_log->is_array());
  EXPECT_EQ(r.vm_config, in.vm_config);
  ASSERT_TRUE(r.info && r.info->is_object());
  EXPECT_EQ(r.info->as_object(), in.info);
  ASSERT_TRUE(r.gpu.nvidia_payload.is_string());
  EXPECT_EQ(r.gpu.nvidia_payload.as_string(), in.gpu->nvidia_payload);
  ASSERT_TRUE(r.gpu.items);
  ASSERT_EQ(r.gpu.items->size(), 2u);
  EXPECT_EQ((*r.gpu.items)[1].certificate, "UEVNMQ==");
  EXPECT_EQ((*r.gpu.items)[1].nonce, std::string(64, '1'));
  EXPECT_FALSE(r.gpu.error);
  ASSERT_TRUE(r.gpu.info);
  EXPECT_EQ(r.gpu.info->at("driver_version"), "550.90.07");
  EXPECT_TRUE(r.gpu.simulated);
  EXPECT_EQ(r.gpu.notice, kGpuSimulatedNotice);
  EXPECT_TRUE(r.simulated);
  EXPECT_EQ(r.simulated_notice, std::string(kSimulatedNotice));

  // The payload text decodes to the same items (less their nonce: vllm-proxy's items carry none).
  auto p = NvidiaPayload::parse(r.gpu.nvidia_payload);
  EXPECT_EQ(p.nonce, std::string(64, '1'));
  EXPECT_EQ(p.arch, "HOPPER");
  ASSERT_EQ(p.evidence_list.size(), 2u);
  EXPECT_EQ(p.evidence_list[0].evidence, "ECA=");
  EXPECT_EQ(p.evidence_list[0].arch, "HOPPER");
  EXPECT_FALSE(p.evidence_list[0].nonce);
  EXPECT_EQ(p.to_text(), in.gpu->nvidia_payload);
}

TEST(ProtocolReport, ForeignReportsWithMissingFieldsParse) {
  // dstack's GetQuote answer: quote/event_log/vm_config only (and an unknown report_data).
  auto r =
      AttestationReport::parse(json::parse(R"({"quote":"04","event_log":"[]","report_data":"00","vm_config":"{}"})"));
  EXPECT_FALSE(r.signing_address);
  EXPECT_FALSE(r.intel_quote);
  ASSERT_TRUE(r.quote);
  EXPECT_EQ(r.quote->as_string(), "04");
  EXPECT_TRUE(r.gpu.nvidia_payload.is_null());
  EXPECT_FALSE(r.gpu.items);
  EXPECT_FALSE(r.simulated);
  // NEAR: tls_cert_fingerprint; dstack's quote object; info as a string; nvidia_payload as an object
  auto n = AttestationReport::parse(
      json::parse(R"({"tls_cert_fingerprint":"aa","quote":{"quote":"04"},"info":"{'a': True}","event_log":null,)"
                  R"("nvidia_payload":{"evidence_list":[]}})"));
  EXPECT_EQ(n.tls_cert_fingerprint, "aa");
  EXPECT_TRUE(n.quote->is_object());
  EXPECT_TRUE(n.info->is_string());
  EXPECT_TRUE(n.event_log->is_null());
  EXPECT_TRUE(n.gpu.nvidia_payload.is_object());
}

std::string shape_error_field(const char* doc) {
  try {
    AttestationReport::parse(json::parse(doc));
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find(e.field()), std::string::npos);
    return e.field();
  }
  return "(no error)";
}

TEST(ProtocolReport, AWrongTypeIsAnErrorNamingTheField) {
  EXPECT_EQ(shape_error_field(R"({"signing_public_key": 5})"), "signing_public_key");
  EXPECT_EQ(shape_error_field(R"({"signing_address": null})"), "signing_address");
  EXPECT_EQ(shape_error_field(R"({"signing_algo": ["ecdsa"]})"), "signing_algo");
  EXPECT_EQ(shape_error_field(R"({"request_nonce": {}})"), "request_nonce");
  EXPECT_EQ(shape_error_field(R"({"intel_quote": 5})"), "intel_quote");
  EXPECT_EQ(shape_error_field(R"({"quote": 5})"), "quote");
  EXPECT_EQ(shape_error_field(R"({"quote": []})"), "quote");
  EXPECT_EQ(shape_error_field(R"({"event_log": true})"), "event_log");
  EXPECT_EQ(shape_error_field(R"({"vm_config": {}})"), "vm_config");
  EXPECT_EQ(shape_error_field(R"({"info": 1})"), "info");
  EXPECT_EQ(shape_error_field(R"({"nvidia_payload": 1})"), "nvidia_payload");
  EXPECT_EQ(shape_error_field(R"({"gpu_evidence": {}})"), "gpu_evidence");
  EXPECT_EQ(shape_error_field(R"({"gpu_evidence": [{"certificate": "a"}]})"), "gpu_evidence[0].evidence");
  EXPECT_EQ(shape_error_field(R"({"gpu_evidence": [{"certificate": "a", "evidence": "b", "arch": 1}]})"),
            "gpu_evidence[0].arch");
  EXPECT_EQ(shape_error_field(R"({"gpu_evidence": [7]})"), "gpu_evidence[0]");
  EXPECT_EQ(shape_error_field(R"({"gpu_evidence_error": 0})"), "gpu_evidence_error");
  EXPECT_EQ(shape_error_field(R"({"gpu_evidence_info": "x"})"), "gpu_evidence_info");
  EXPECT_EQ(shape_error_field(R"({"gpu_evidence_simulated": "yes"})"), "gpu_evidence_simulated");
  EXPECT_EQ(shape_error_field(R"({"gpu_evidence_notice": false})"), "gpu_evidence_notice");
  EXPECT_EQ(shape_error_field(R"({"simulated": "false"})"), "simulated");
  EXPECT_EQ(shape_error_field(R"({"simulated_notice": 1})"), "simulated_notice");
  EXPECT_EQ(shape_error_field(R"({"tls_cert_fingerprint": 1})"), "tls_cert_fingerprint");
  EXPECT_EQ(shape_error_field(R"({"all_attestations": {}})"), "all_attestations");
  EXPECT_EQ(shape_error_field("[]"), "(report)");
  EXPECT_EQ(shape_error_field("null"), "(report)");
  EXPECT_EQ(shape_error_field("{}"), "(no error)");
}

TEST(ProtocolReport, NvidiaPayloadDecodeForms) {
  // JSON string (NULs dropped), object and bare array
  std::string text = R"({"nonce": "ab", "evidence_list": [{"certificate": "c", "evidence": "e"}], "arch": "X"})";
  std::string with_nul = text;
  with_nul.insert(5, 1, '\0');
  auto d = NvidiaPayload::decode(json::value(with_nul));
  EXPECT_TRUE(d.from_string);
  EXPECT_EQ(d.nonce, "ab");
  EXPECT_EQ(d.arch, "X");
  ASSERT_EQ(d.entries.size(), 1u);
  ASSERT_TRUE(d.entries[0].item);
  EXPECT_FALSE(d.entries[0].item->arch);
  auto a = NvidiaPayload::decode(json::parse(R"([{"certificate":"c","evidence":"e","nonce":"n"}, 5, {}])"));
  EXPECT_FALSE(a.from_string);
  EXPECT_FALSE(a.nonce);
  ASSERT_EQ(a.entries.size(), 3u);
  EXPECT_EQ(a.entries[0].item->nonce, "n");
  EXPECT_FALSE(a.entries[1].item);
  EXPECT_NE(a.entries[1].error.find("nvidia_payload[1]"), std::string::npos);
  EXPECT_NE(a.entries[1].error.find("not a JSON object"), std::string::npos);
  EXPECT_NE(a.entries[2].error.find("nvidia_payload[2].certificate"), std::string::npos);
  try {
    NvidiaPayload::parse(json::parse(R"([{"certificate":"c","evidence":"e"}, {"certificate":"c"}])"));
    ADD_FAILURE() << "a bad item must fail the strict parse";
  } catch (const ShapeError& e) {
    EXPECT_EQ(e.field(), "nvidia_payload[1].evidence");
  }
  auto envelope_field = [](const json::value& v) {
    try {
      NvidiaPayload::decode(v);
    } catch (const ShapeError& e) {
      return e.field();
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(envelope_field(json::value("{not json")), "nvidia_payload");
  EXPECT_EQ(envelope_field(json::parse(R"({"evidence_list": {}})")), "nvidia_payload.evidence_list");
  EXPECT_EQ(envelope_field(json::parse(R"({"nonce": 1, "evidence_list": []})")), "nvidia_payload.nonce");
  EXPECT_EQ(envelope_field(json::parse(R"({"arch": 1, "evidence_list": []})")), "nvidia_payload.arch");
  EXPECT_EQ(envelope_field(json::parse("{}")), "nvidia_payload.evidence_list");
  EXPECT_EQ(envelope_field(json::parse("3")), "nvidia_payload");
  EXPECT_EQ(envelope_field(json::value("5")), "nvidia_payload");
}

TEST(ProtocolReport, NvidiaPayloadTextEscapesLikePythonJsonDumps) {
  NvidiaPayload p;
  p.nonce = "ab";
  p.arch = "HOPPER";
  // U+00D6, newline, quote, backslash, slash, U+0001, U+1F600; then an invalid UTF-8 byte
  p.evidence_list.push_back({"Y2VydA==", "ZXY=", "H\xC3\x96P\n\"\\/\x01\xF0\x9F\x98\x80", std::nullopt});
  // python3 -c 'import json; print(json.dumps({"nonce":"ab","evidence_list":[{"certificate":"Y2VydA==",
  //   "evidence":"ZXY=","arch":"H\u00d6P\n\"\\/\x01\U0001F600"}],"arch":"HOPPER"}))'
  EXPECT_EQ(p.to_text(), R"({"nonce": "ab", "evidence_list": [{"certificate": "Y2VydA==", "evidence": "ZXY=", )"
                         R"("arch": "H\u00d6P\n\"\\/\u0001\ud83d\ude00"}], "arch": "HOPPER"})");
  p.evidence_list[0].arch = "\xFF";
  EXPECT_NE(p.to_text().find(R"("arch": "\ufffd")"), std::string::npos);
  // The text is JSON and decodes back.
  p.evidence_list[0].arch = "H\xC3\x96P\n\"\\/\x01\xF0\x9F\x98\x80";
  auto back = NvidiaPayload::parse(json::value(p.to_text()));
  EXPECT_EQ(back.evidence_list[0].arch, p.evidence_list[0].arch);
  // Bare-array form (no nonce, no arch) and an empty list
  NvidiaPayload bare;
  EXPECT_EQ(bare.to_text(), R"({"evidence_list": []})");
}

TEST(ProtocolReport, SignatureResponseIsTheServedRecordAndRoundTrips) {
  auto id = SigningIdentity::random();
  auto rec = id.sign(crypto::sha256("req"), crypto::sha256("res"));
  for (auto algo : {SigningAlgo::Ecdsa, SigningAlgo::Ed25519}) {
    const auto o = signature_response(rec, id, algo);
    const std::string ecdsa = ecdsa_signature_hex(rec), ed = ed25519_signature_hex(rec);
    const std::string expected =
        R"({"text":")" + rec.text() + R"(","signature":")" + (algo == SigningAlgo::Ecdsa ? ecdsa : ed) +
        R"(","signing_address":")" + id.signing_address(algo) + R"(","signing_algo":")" + std::string(to_string(algo)) +
        R"(","request_hash":")" + to_hex(rec.request_hash) + R"(","response_hash":")" + to_hex(rec.response_hash) +
        R"(","ecdsa_signature":")" + ecdsa + R"(","ed25519_signature":")" + ed + R"(","ecdsa_signing_address":")" +
        id.signing_address(SigningAlgo::Ecdsa) + R"(","ed25519_signing_address":")" +
        id.signing_address(SigningAlgo::Ed25519) + R"("})";
    EXPECT_EQ(json::serialize(o), expected);
    auto parsed = SignatureResponse::parse(o);
    EXPECT_EQ(json::serialize(parsed.to_json()), expected);
    EXPECT_EQ(parsed.inconsistency(), "");
    EXPECT_EQ(parsed.signature_for(algo), algo == SigningAlgo::Ecdsa ? ecdsa : ed);
    EXPECT_EQ(parsed.signing_address_for(algo), id.signing_address(algo));
  }
}

TEST(ProtocolReport, SignatureResponseTypesAndConsistency) {
  for (const char* f : {"text", "signature", "signing_address", "signing_algo", "request_hash", "response_hash",
                        "ecdsa_signature", "ed25519_signature", "ecdsa_signing_address", "ed25519_signing_address"}) {
    json::object o{{f, 1}};
    try {
      SignatureResponse::parse(o);
      ADD_FAILURE() << f;
    } catch (const ShapeError& e) {
      EXPECT_EQ(e.field(), f);
    }
  }
  EXPECT_THROW(SignatureResponse::parse(json::value("x")), ShapeError);
  // vllm-proxy's record: only the generic fields
  auto v = SignatureResponse::parse(json::parse(R"({"signature":"s","signing_address":"a","signing_algo":"ecdsa"})"));
  EXPECT_EQ(v.signature_for(SigningAlgo::Ecdsa), "s");
  EXPECT_EQ(v.signing_address_for(SigningAlgo::Ed25519), "a");
  EXPECT_EQ(v.inconsistency(), "");
  // signing_address names another key than the one for its own algorithm
  auto bad = SignatureResponse::parse(json::parse(
      R"({"signing_algo":"ecdsa","signing_address":"0xAA","ecdsa_signing_address":"0xBB","ed25519_signing_address":"aa"})"));
  EXPECT_NE(bad.inconsistency().find("ecdsa_signing_address"), std::string::npos);
  // the same address in another case / without 0x is the same address
  auto same = SignatureResponse::parse(
      json::parse(R"({"signing_algo":"ecdsa","signing_address":"0xAbC","ecdsa_signing_address":"0xabc"})"));
  EXPECT_EQ(same.inconsistency(), "");
  auto sig =
      SignatureResponse::parse(json::parse(R"({"signing_algo":"ed25519","signature":"01","ed25519_signature":"02"})"));
  EXPECT_NE(sig.inconsistency().find("ed25519_signature"), std::string::npos);
}

TEST(ProtocolReport, ParseNeverCrashesOnAnyShape) {
  const std::pair<const char*, bool> docs[] = {
      // document, parse throws
      {"0", true},
      {"\"s\"", true},
      {"true", true},
      {"{\"quote\":{}}", false},
      {"{\"gpu_evidence\":[[],{},null]}", true},
      {"{\"all_attestations\":[1,2]}", false},
      {"{\"info\":null,\"event_log\":{}}", false},
      {"{\"nvidia_payload\":\"not json at all\"}", false},  // decoded by NvidiaPayload::decode, not here
  };
  for (const auto& [d, throws] : docs) {
    bool threw = false;
    try {
      auto r = AttestationReport::parse(json::parse(d));
      EXPECT_TRUE(r.to_json().at("all_attestations").is_array()) << d;
    } catch (const ShapeError& e) {
      threw = true;
      EXPECT_FALSE(e.field().empty()) << d;
    }
    EXPECT_EQ(threw, throws) << d;
  }
}

}  // namespace
}  // namespace pi::protocol
