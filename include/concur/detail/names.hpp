// concur/detail/names.hpp
//
// Human-readable names for types, functions and exceptions: what Python shows for free
// (`__name__`, the exception's class) and C++ has to look up. Used for default thread names and
// for the messages printed when an exception escapes a thread or a process.

#ifndef CONCUR_DETAIL_NAMES_HPP
#define CONCUR_DETAIL_NAMES_HPP

#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <typeinfo>

#if defined(__GNUG__)
#include <cxxabi.h>
#endif

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#define CONCUR_HAS_DLADDR 1
#else
#define CONCUR_HAS_DLADDR 0
#endif

namespace concur::detail {

// The readable form of a mangled C++ name, or the name itself when it is not mangled.
inline std::string demangle(const char* mangled) {
#if defined(__GNUG__)
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> readable(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), &std::free);
  if (status == 0 && readable) return readable.get();
#endif
  return mangled;
}

// The bare name of a function from its demangled signature, as Python's `__name__` gives it:
// "ns::worker<int>(int, char)" becomes "worker<int>".
inline std::string bare_function_name(std::string_view signature) {
  int depth = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i < signature.size(); ++i) {
    const char c = signature[i];
    if (c == '<') ++depth;
    if (c == '>') --depth;
    if (depth != 0) continue;
    if (c == '(') return std::string(signature.substr(start, i - start));
    if (c == ':' && i + 1 < signature.size() && signature[i + 1] == ':') start = i + 2;
  }
  return std::string(signature.substr(start));
}

// The name of the function at `address` when the dynamic symbol table has it (functions of
// shared libraries, or of executables linked with -rdynamic), else empty.
inline std::string function_name_at(const void* address) {
#if CONCUR_HAS_DLADDR
  Dl_info info{};
  if (::dladdr(address, &info) != 0 && info.dli_sname != nullptr && info.dli_saddr == address) {
    return bare_function_name(demangle(info.dli_sname));
  }
#else
  (void)address;
#endif
  return {};
}

// "Type: message" for an exception, the last line of Python's traceback.
inline std::string describe_exception(const std::exception_ptr& error) {
  if (!error) return "no exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return demangle(typeid(e).name()) + ": " + e.what();
  } catch (...) {
#if defined(__GNUG__)
    if (const std::type_info* type = abi::__cxa_current_exception_type()) {
      return demangle(type->name()) + " (not derived from std::exception)";
    }
#endif
    return "unknown exception (not derived from std::exception)";
  }
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_NAMES_HPP
