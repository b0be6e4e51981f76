#include "leased/random.hpp"

#include "common/addr.hpp"
#include "common/fatal.hpp"

#include <sodium.h>

#include <cstdlib>

namespace wgd::leased {

std::uint64_t RandomSource::uniform(std::uint64_t bound) {
    // Values below 2^64 mod bound would be over-represented: reject them.
    const std::uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        std::uint64_t x = next64();
        if (x >= threshold)
            return x % bound;
    }
}

u128 RandomSource::uniform128(u128 bound) {
    if (bound <= ~std::uint64_t{0})
        return uniform(static_cast<std::uint64_t>(bound));
    const u128 threshold = (0 - bound) % bound;
    for (;;) {
        u128 x = (u128{next64()} << 64) | next64();
        if (x >= threshold)
            return x % bound;
    }
}

SodiumRandom::SodiumRandom() {
    if (sodium_init() < 0)
        fatal("libsodium cannot start");
}

std::uint64_t SodiumRandom::next64() {
    if (next_ == buffer_.size()) {
        randombytes_buf(buffer_.data(), sizeof buffer_);
        next_ = 0;
    }
    return buffer_[next_++];
}

std::uint64_t DeterministicRandom::next64() {
    return mix64(state_ += 0x9e3779b97f4a7c15ULL); // splitmix64: a counter, mixed
}

} // namespace wgd::leased
