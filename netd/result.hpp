// netd's error reporting: every operation answers a Result, never throws
// across the API, so the caller (netd's order loop) can answer leased with
// the reason and keep serving.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace wgd::netd {

struct Error {
    int code = 0; // an errno value (EEXIST, EINVAL, ENODEV, ...) or 0 when none applies
    std::string message;
};

template <class T>
class [[nodiscard]] Result {
  public:
    Result(T value) : v_(std::move(value)) {}
    Result(Error error) : v_(std::move(error)) {}

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& value() { return std::get<0>(v_); }
    const T& value() const { return std::get<0>(v_); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() { return value(); }
    const Error& error() const { return std::get<1>(v_); }

  private:
    std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
  public:
    Result() = default;
    Result(Error error) : error_(std::move(error)) {}

    bool ok() const { return !error_; }
    explicit operator bool() const { return ok(); }
    const Error& error() const { return *error_; }

  private:
    std::optional<Error> error_;
};

inline Error make_error(int code, std::string message) {
    return Error{code, std::move(message)};
}

} // namespace wgd::netd
