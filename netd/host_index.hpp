// Who holds a host address (/32 or /128): a hash table of peer indexes only,
// 4 bytes a slot. The address is not stored: the peer it names already holds
// it, and the caller's holds(peer, address) answers whether a slot matches.
// Two std::unordered_map<Ip, u32> cost 40-56 bytes an entry (a node and a
// bucket); this costs about 6 at netd's load.
//
// Open addressing, linear probing, at most 3/4 full counting tombstones. An
// erase leaves a tombstone (a backward shift would need the addresses of the
// entries it moves, which only their peers know); the caller rebuilds the
// table from its peers (reset, then assign each) when has_room() says no,
// which also clears the tombstones.
//
// A slot names a peer, not an address: when a peer holds several addresses
// their slots are interchangeable (each address finds one of them on its
// probe path, since runs have no empty slot inside).
//
// The caller keeps these rules: an address is held by one peer at a time (as
// in WireGuard); an entry's peer holds its address while it is indexed
// (assign after adding the address to the peer, erase before removing it);
// an address is assigned to a peer once (not again while indexed under it);
// the peer indexes stay valid (rebuild after renumbering peers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/addr.hpp"

namespace wgd::netd {

template <class Ip>
class HostIndex {
  public:
    static constexpr std::uint32_t kNone = 0xffffffffu;

    // `key`: the hash key (AddressHash); netd's views take a random one,
    // because leased chooses the addresses of its orders.
    explicit HostIndex(std::uint64_t key = 0) : hash_{key} {}

    // Empty, with room for `entries` and some to spare. The old slots are
    // freed first: the table is never held twice.
    void reset(std::size_t entries) {
        slots_ = std::vector<std::uint32_t>();
        slots_.assign(entries + entries / 2 + 8, kNone);
        size_ = tombstones_ = 0;
    }
    // False when `more` assigns could fill it over 3/4: rebuild with reset().
    bool has_room(std::size_t more) const {
        return (size_ + tombstones_ + more) * 4 <= slots_.size() * 3;
    }
    std::size_t size() const { return size_; }
    std::size_t capacity() const { return slots_.size(); }
    std::size_t tombstones() const { return tombstones_; }
    std::size_t memory_bytes() const { return slots_.capacity() * sizeof(std::uint32_t); }

    // The peer indexed under a, or kNone.
    template <class Holds>
    std::uint32_t find(const Ip& a, Holds holds) const {
        if (slots_.empty())
            return kNone;
        for (std::size_t i = home(a);; i = next(i)) {
            const std::uint32_t s = slots_[i];
            if (s == kNone)
                return kNone;
            if (s != kTombstone && holds(s, a))
                return s;
        }
    }

    // Indexes a under peer (which must hold it, and under which a is not
    // indexed yet), replacing another holder. False, and nothing changed,
    // when there is no room (has_room(1)).
    template <class Holds>
    bool assign(const Ip& a, std::uint32_t peer, Holds holds) {
        std::size_t reuse = slots_.size();
        if (!slots_.empty()) {
            for (std::size_t i = home(a);; i = next(i)) {
                const std::uint32_t s = slots_[i];
                if (s == kNone)
                    break;
                if (s == kTombstone) {
                    if (reuse == slots_.size())
                        reuse = i;
                } else if (s != peer && holds(s, a)) {
                    slots_[i] = peer;
                    return true;
                }
            }
        }
        if (reuse != slots_.size()) {
            slots_[reuse] = peer;
            tombstones_--;
            size_++;
            return true;
        }
        if (!has_room(1))
            return false;
        for (std::size_t i = home(a);; i = next(i)) {
            if (slots_[i] == kNone) {
                slots_[i] = peer;
                size_++;
                return true;
            }
        }
    }

    // Forgets a when `peer` is the one indexed under it (which still holds
    // it); false otherwise.
    template <class Holds>
    bool erase(const Ip& a, std::uint32_t peer, Holds holds) {
        if (slots_.empty())
            return false;
        for (std::size_t i = home(a);; i = next(i)) {
            const std::uint32_t s = slots_[i];
            if (s == kNone)
                return false;
            if (s != kTombstone && holds(s, a)) {
                if (s != peer)
                    return false;
                slots_[i] = kTombstone;
                size_--;
                tombstones_++;
                return true;
            }
        }
    }

  private:
    static constexpr std::uint32_t kTombstone = 0xfffffffeu;

    // The top 32 bits of the hash scaled to the table: any size works, so the
    // table grows by half, not by doubling.
    std::size_t home(const Ip& a) const {
        return static_cast<std::size_t>(((hash_(a) >> 32) * slots_.size()) >> 32);
    }
    std::size_t next(std::size_t i) const { return i + 1 == slots_.size() ? 0 : i + 1; }

    AddressHash hash_;
    std::vector<std::uint32_t> slots_;
    std::size_t size_ = 0;
    std::size_t tombstones_ = 0;
};

} // namespace wgd::netd
