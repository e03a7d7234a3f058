// The SSE completion scanner (protocol/sse.hpp) over engine stream bytes. The scanner is incremental, so its
// verdict must not depend on how the stream is cut into reads: the input is fed once whole and once in chunks
// chosen by the input, and the two scanners must agree on id, completed, error and overflow.
//
// Input: byte 0 chooses max_line (0: the default 8 MiB, else 2 * byte), byte 1 seeds the chunk sizes, the rest
// is the stream.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_support.hpp"
#include "protocol/sse.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t max_line = data[0] == 0 ? std::size_t{8} << 20 : std::size_t{2} * data[0];
  std::uint32_t seed = data[1] | 0x100u;
  std::string_view stream = pi::fuzz::as_text(data + 2, size - 2);

  pi::protocol::SseScanner whole(max_line);
  whole.feed(stream);

  pi::protocol::SseScanner chunked(max_line);
  while (!stream.empty()) {
    seed = seed * 1103515245u + 12345u;
    const std::size_t n = std::min<std::size_t>(stream.size(), 1 + (seed >> 16) % 17);
    chunked.feed(stream.substr(0, n));
    chunked.feed({});  // an empty read changes nothing
    stream.remove_prefix(n);
  }

  if (whole.id() != chunked.id() || whole.completed() != chunked.completed() || whole.error() != chunked.error() ||
      whole.overflow() != chunked.overflow() || whole.signable() != chunked.signable())
    __builtin_trap();
  if (whole.signable() && (whole.id().empty() || !whole.completed() || whole.error() || whole.overflow()))
    __builtin_trap();
  return 0;
}
