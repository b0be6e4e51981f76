// Random numbers for address allocation: an interface so that tests can
// replay a fixed sequence, and the cryptographic source for production.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace wgd::leased {

using u128 = unsigned __int128;

class RandomSource {
  public:
    virtual ~RandomSource() = default;
    // 64 uniformly distributed random bits.
    virtual std::uint64_t next64() = 0;

    // Uniform in [0, bound) by rejection sampling (no modulo bias);
    // bound must be > 0. uniform128 serves IPv6 pools larger than 2^64.
    std::uint64_t uniform(std::uint64_t bound);
    u128 uniform128(u128 bound);
};

// libsodium's randombytes, read in chunks: one syscall-free refill per
// 4 KiB keeps a draw far cheaper than a call per draw would be.
class SodiumRandom final : public RandomSource {
  public:
    SodiumRandom(); // calls sodium_init(); aborts if libsodium cannot start
    std::uint64_t next64() override;

  private:
    std::array<std::uint64_t, 512> buffer_{};
    std::size_t next_ = 512;
};

// splitmix64: reproducible sequences for tests and benchmarks.
class DeterministicRandom final : public RandomSource {
  public:
    explicit DeterministicRandom(std::uint64_t seed) : state_(seed) {}
    std::uint64_t next64() override;

  private:
    std::uint64_t state_;
};

} // namespace wgd::leased
