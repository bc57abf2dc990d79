// libFuzzer target for concur's message decoder (concur/codec.hpp): arbitrary bytes decoded as
// several nested types must either decode or throw std::system_error(EBADMSG) — never read out
// of bounds, crash or allocate without bound. The sanitizers turn any violation into a crash.
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I include \
//       tests/fuzz/decode_fuzz.cpp -o decode_fuzz && ./decode_fuzz -max_total_time=30

#include <concur/codec.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace {

template <class T>
void try_decode(std::string_view bytes) {
  try {
    const T value = concur::decode<T>(bytes);
    // Whatever decodes must survive a round trip. The check compares encodings, not values, so
    // that a NaN still counts as itself; and the first encoding, not the input, since a set
    // sent out of order decodes fine but encodes back sorted.
    const std::string canonical = concur::encode(value);
    if (concur::encode(concur::decode<T>(canonical)) != canonical) __builtin_trap();
  } catch (const std::system_error& error) {
    if (error.code().value() != EBADMSG) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte picks a type, the rest is the message.
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 6) {
    case 0:
      try_decode<std::string>(bytes);
      break;
    case 1:
      try_decode<std::vector<std::int32_t>>(bytes);
      break;
    case 2:
      try_decode<std::map<std::string, std::vector<std::optional<std::string>>>>(bytes);
      break;
    case 3:
      try_decode<std::tuple<bool, std::optional<double>, std::vector<std::string>>>(bytes);
      break;
    case 4:
      try_decode<std::set<std::vector<std::uint16_t>>>(bytes);
      break;
    default:
      try_decode<std::vector<std::pair<std::string, std::optional<bool>>>>(bytes);
      break;
  }
  return 0;
}
