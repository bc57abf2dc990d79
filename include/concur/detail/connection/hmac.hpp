// concur/detail/connection/hmac.hpp
//
// The cryptography seam of concur/listener.hpp: HMAC with the digests Python's
// multiprocessing.connection accepts, random bytes for challenges, and a comparison whose time
// does not depend on where two MACs differ. Everything comes from OpenSSL's libcrypto; nothing
// cryptographic is written here. This is the only file in concur that includes OpenSSL.

#ifndef CONCUR_DETAIL_CONNECTION_HMAC_HPP
#define CONCUR_DETAIL_CONNECTION_HMAC_HPP

#if !__has_include(<openssl/hmac.h>)
#error \
    "concur/listener.hpp needs OpenSSL's libcrypto (Debian/Ubuntu: apt-get install libssl-dev); link the concur::listener CMake target, which adds it. The rest of concur needs nothing."
#endif

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <cerrno>
#include <climits>
#include <string>
#include <string_view>
#include <system_error>

#include "concur/errors.hpp"

namespace concur::detail {

// The digests a peer may name in "{name}" (Python's _ALLOWED_DIGESTS), with OpenSSL's own.
struct NamedDigest {
  std::string_view name;
  const EVP_MD* (*make)();
};
inline constexpr std::array<NamedDigest, 5> allowed_digests{{{"md5", EVP_md5},
                                                             {"sha256", EVP_sha256},
                                                             {"sha384", EVP_sha384},
                                                             {"sha3_256", EVP_sha3_256},
                                                             {"sha3_384", EVP_sha3_384}}};
// The longest name above: a "{name}" prefix is looked for only this far into a message.
inline constexpr std::size_t longest_digest_name = 8;

// The digest called `name`, or nullptr when it is not one of the allowed five.
inline const EVP_MD* find_digest(std::string_view name) noexcept {
  for (const NamedDigest& digest : allowed_digests) {
    if (digest.name == name) return digest.make();
  }
  return nullptr;
}

// HMAC of `message` under `key` with the digest called `name`. Throws AuthenticationError when
// the digest is not allowed or this libcrypto refuses it (MD5 under a FIPS policy).
inline std::string hmac(std::string_view name, std::string_view key, std::string_view message) {
  const EVP_MD* digest = find_digest(name);
  if (digest == nullptr) {
    throw AuthenticationError("digest " + std::string(name) + " is not allowed");
  }
  if (key.size() > static_cast<std::size_t>(INT_MAX)) {
    throw std::invalid_argument("authkey longer than 2 GiB");
  }
  // An empty key still needs a valid pointer: some libcrypto versions refuse a null one.
  static constexpr unsigned char no_key = 0;
  const void* key_bytes = key.empty() ? &no_key : static_cast<const void*>(key.data());
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (HMAC(digest, key_bytes, static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), out,
           &length) == nullptr) {
    throw AuthenticationError("HMAC-" + std::string(name) + " is not available in this libcrypto");
  }
  return std::string(reinterpret_cast<const char*>(out), length);
}

// `count` bytes from libcrypto's cryptographically secure generator.
inline std::string random_bytes(std::size_t count) {
  std::string bytes(count, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(count)) != 1) {
    throw std::system_error(EIO, std::generic_category(), "RAND_bytes failed");
  }
  return bytes;
}

// Whether two MACs of the same length are equal, in time that does not depend on their bytes
// (Python's hmac.compare_digest).
inline bool same_mac(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_CONNECTION_HMAC_HPP
