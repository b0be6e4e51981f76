// Recoverable errors as values, the one way every role reports them: an
// operation answers a Result (shaped like C++23's std::expected: has_value,
// value, error) and never throws across its API, so the caller can answer
// with the reason and keep serving. What cannot be recovered from goes
// through common/fatal.hpp instead.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace wgd {

struct Error {
    int code = 0; // an errno value (EEXIST, EINVAL, ENODEV, ...) or 0 when none applies
    std::string message;
};

template <class T>
class [[nodiscard]] Result {
  public:
    Result(T value) : v_(std::move(value)) {}
    Result(Error error) : v_(std::move(error)) {}

    bool has_value() const { return v_.index() == 0; }
    explicit operator bool() const { return has_value(); }
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

    bool has_value() const { return !error_; }
    explicit operator bool() const { return has_value(); }
    const Error& error() const { return *error_; }

  private:
    std::optional<Error> error_;
};

inline Error make_error(int code, std::string message) {
    return Error{code, std::move(message)};
}
// An error that has a reason and no errno.
inline Error failure(std::string message) {
    return Error{0, std::move(message)};
}

} // namespace wgd
