#include "protocol/sse.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

namespace pi::protocol {

void SseScanner::feed(std::string_view bytes) {
  while (!bytes.empty()) {
    auto nl = bytes.find('\n');
    std::string_view part = nl == std::string_view::npos ? bytes : bytes.substr(0, nl);
    if (!skipping_) {
      if (line_.size() + part.size() > max_line_) {
        overflow_ = true;
        skipping_ = true;
        line_.clear();
      } else if (nl != std::string_view::npos && line_.empty()) {
        on_line(part);  // whole line inside this chunk: no copy
      } else {
        line_.append(part);
      }
    }
    if (nl == std::string_view::npos) return;
    if (!skipping_ && !line_.empty()) on_line(line_);
    line_.clear();
    skipping_ = false;
    bytes.remove_prefix(nl + 1);
  }
}

void SseScanner::on_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.starts_with("data:")) {
    line.remove_prefix(5);
    if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    on_data(line);
  } else if (line.starts_with("event:")) {
    line.remove_prefix(6);
    if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    if (line == "error" || line == "response.failed" || line == "response.incomplete") error_ = true;
  }
}

void SseScanner::on_data(std::string_view payload) {
  if (payload == "[DONE]") {
    completed_ = true;
    return;
  }
  // Parse only what can change our state: the first event (for the id), anything that
  // mentions an error, and Responses-API lifecycle events. Ordinary token deltas are skipped.
  const bool need_id = id_.empty();
  const bool mentions_error = payload.find("\"error\"") != std::string_view::npos;
  const bool lifecycle = payload.find("\"response.") != std::string_view::npos;
  if (!need_id && !mentions_error && !lifecycle) return;

  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(payload, ec);
  if (ec || !v.is_object()) return;
  const auto& o = v.get_object();
  if (o.contains("error") && !o.at("error").is_null()) error_ = true;
  if (auto* obj = o.if_contains("object"); obj && obj->is_string() && obj->get_string() == "error") error_ = true;
  if (auto* t = o.if_contains("type"); t && t->is_string()) {
    const auto& type = t->get_string();
    if (type == "response.completed") completed_ = true;
    if (type == "error" || type == "response.failed" || type == "response.incomplete") error_ = true;
  }
  if (need_id) {
    if (auto* id = o.if_contains("id"); id && id->is_string()) {
      id_ = id->get_string();
    } else if (auto* r = o.if_contains("response"); r && r->is_object()) {
      if (auto* rid = r->get_object().if_contains("id"); rid && rid->is_string()) id_ = rid->get_string();
    }
  }
}

}  // namespace pi::protocol
