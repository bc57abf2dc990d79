// concur/detail/connection/framing.hpp
//
// Python's framing of a byte message on a multiprocessing Connection, written and read in one
// place: a 4-byte big-endian signed length, then the payload; a payload longer than 2 GiB - 1
// is announced by a length of -1 followed by an 8-byte big-endian length (Python 3.8+).
//
//   short: [ len:4 ][ payload ]            len <= 0x7fffffff
//   long:  [ ff ff ff ff ][ len:8 ][ payload ]

#ifndef CONCUR_DETAIL_CONNECTION_FRAMING_HPP
#define CONCUR_DETAIL_CONNECTION_FRAMING_HPP

#include <cstddef>
#include <cstdint>

namespace concur::detail {

// The longest payload a 4-byte header announces.
inline constexpr std::uint64_t short_frame_limit = 0x7fffffff;

// The 4-byte value that says an 8-byte length follows (-1 as a signed length).
inline constexpr std::uint64_t long_frame_marker = 0xffffffff;

// The header of a frame whose payload is `payload` bytes: 4 bytes, or 12 past 2 GiB - 1.
struct FrameHeader {
  unsigned char bytes[12];
  std::size_t size;
};

// Writes `value` as `count` big-endian bytes at `out`.
inline void put_big_endian(unsigned char* out, std::uint64_t value, int count) noexcept {
  for (int i = 0; i < count; ++i) {
    out[i] = static_cast<unsigned char>(value >> (8 * (count - 1 - i)));
  }
}

// The value of `count` big-endian bytes at `in`.
[[nodiscard]] inline std::uint64_t get_big_endian(const unsigned char* in, int count) noexcept {
  std::uint64_t value = 0;
  for (int i = 0; i < count; ++i) value = (value << 8) | in[i];
  return value;
}

[[nodiscard]] inline FrameHeader frame_header(std::uint64_t payload) noexcept {
  FrameHeader header{};
  if (payload > short_frame_limit) {
    put_big_endian(header.bytes, long_frame_marker, 4);
    put_big_endian(header.bytes + 4, payload, 8);
    header.size = 12;
  } else {
    put_big_endian(header.bytes, payload, 4);
    header.size = 4;
  }
  return header;
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_CONNECTION_FRAMING_HPP
