#include "protocol/wire.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "protocol/report.hpp"

namespace pi::protocol {

std::string error_envelope(std::string_view message, std::string_view type, std::optional<std::string_view> param,
                           std::optional<std::string_view> code) {
  boost::json::object err;
  err["message"] = message;
  err["type"] = type;
  err["param"] = param ? boost::json::value(*param) : boost::json::value(nullptr);
  err["code"] = code ? boost::json::value(*code) : boost::json::value(nullptr);
  boost::json::object root;
  root["error"] = std::move(err);
  return boost::json::serialize(root);
}

boost::json::object signature_response(const SignatureRecord& r, const SigningIdentity& id, SigningAlgo algo,
                                       std::string_view instance_id) {
  return SignatureResponse::make(r, id, algo, instance_id).to_json();
}

std::optional<std::string> response_id(std::string_view json_body) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(json_body, ec);
  if (ec || !v.is_object()) return std::nullopt;
  if (auto* id = v.get_object().if_contains("id"); id && id->is_string()) return std::string(id->get_string());
  return std::nullopt;
}

}  // namespace pi::protocol
