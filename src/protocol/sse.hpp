#pragma once
// Incremental scanner for the Server-Sent-Events streams of OpenAI-compatible engines.
// It never buffers the stream: it looks at one line at a time to learn
//   * the response id (first `data:` JSON with a top-level "id", or Responses-API "response.id"),
//   * whether the stream completed (`data: [DONE]`, or a Responses-API `response.completed` event),
//   * whether the backend reported an error inside the stream.
// Only complete, error-free streams are signed (docs/protocol.md).
#include <cstddef>
#include <string>
#include <string_view>

namespace pi::protocol {

class SseScanner {
 public:
  explicit SseScanner(std::size_t max_line = 8u << 20) : max_line_(max_line) {}

  void feed(std::string_view bytes);

  const std::string& id() const { return id_; }
  bool completed() const { return completed_; }
  bool error() const { return error_; }
  // A line longer than max_line could not be inspected; such a stream is not signed.
  bool overflow() const { return overflow_; }
  // Completed, no error, no overflow, id known.
  bool signable() const { return completed_ && !error_ && !overflow_ && !id_.empty(); }

 private:
  void on_line(std::string_view line);
  void on_data(std::string_view payload);

  std::size_t max_line_;
  std::string line_;
  bool skipping_ = false;  // inside an over-long line
  std::string id_;
  bool completed_ = false;
  bool error_ = false;
  bool overflow_ = false;
};

}  // namespace pi::protocol
