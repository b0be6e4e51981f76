// Who holds a lease in netd's leased set: a value per peer key, kept in a
// dense deque of (key, value) and found through a hash table of 4-byte
// indexes into it. A std::map node cost 96 bytes a peer at 100,000 leases,
// as much as netd's whole copy of the device; this costs the entry itself
// (54 bytes for the leased set's), its share of the deque's blocks and
// about 6 bytes of table.
//
// Open addressing with linear probing, at most 3/4 full; an erase shifts
// the later entries of its run back (their keys are in the deque) and moves
// the last entry into the hole of the deque, so neither ever holds a
// tombstone. Pointers to values stay valid until the next add or erase.
#pragma once

#include "common/addr.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <vector>

namespace wgd::netd {

template <class Value>
class LeaseTable {
  public:
    // `hash_key`: netd's random key (address_hash_key()), because leased
    // chooses which peers its orders name.
    explicit LeaseTable(std::uint64_t hash_key) : hash_key_(hash_key) {}

    std::size_t size() const { return held_.size(); }

    const Value* find(const PublicKey& key) const {
        const std::size_t s = slot_of(key);
        return s == kNone ? nullptr : &held_[slots_[s]].value;
    }
    Value* find(const PublicKey& key) {
        const std::size_t s = slot_of(key);
        return s == kNone ? nullptr : &held_[slots_[s]].value;
    }

    // The value of key, added (value-initialised) when there was none.
    Value& operator[](const PublicKey& key) {
        if (Value* v = find(key))
            return *v;
        if ((held_.size() + 1) * 4 > slots_.size() * 3)
            rebuild(std::max<std::size_t>(16, (held_.size() + 1) * 2));
        held_.push_back({key, Value{}});
        place(held_.size() - 1);
        return held_.back().value;
    }

    void erase(const PublicKey& key) {
        std::size_t hole = slot_of(key);
        if (hole == kNone)
            return;
        const std::uint32_t index = slots_[hole];
        // Pull back every later entry of the run that may sit at the hole:
        // one whose home is not cyclically in (hole, j].
        slots_[hole] = kEmpty;
        for (std::size_t j = next(hole); slots_[j] != kEmpty; j = next(j)) {
            const std::size_t h = home(held_[slots_[j]].key);
            if (distance(h, j) >= distance(hole, j)) {
                slots_[hole] = slots_[j];
                slots_[j] = kEmpty;
                hole = j;
            }
        }
        // The last entry fills the deque's hole.
        const auto last = static_cast<std::uint32_t>(held_.size() - 1);
        if (index != last) {
            slots_[slot_of(held_[last].key)] = index;
            held_[index] = held_[last];
        }
        held_.pop_back();
    }

    // f(key, value&) for each entry; those for which it returns true are erased.
    template <class F>
    void erase_if(F f) {
        for (std::size_t i = held_.size(); i-- > 0;) // an erase moves only visited entries
            if (f(held_[i].key, held_[i].value))
                erase(PublicKey(held_[i].key));
    }

  private:
    static constexpr std::uint32_t kEmpty = 0xffffffffu;
    static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
    struct Held {
        PublicKey key;
        Value value;
    };

    std::uint64_t hash(const PublicKey& key) const {
        std::uint64_t a, b;
        std::memcpy(&a, key.bytes.data(), 8);
        std::memcpy(&b, key.bytes.data() + 24, 8);
        return mix64(b ^ mix64(a ^ hash_key_));
    }
    // The top 32 bits of the hash scaled to the table: any size works.
    std::size_t home(const PublicKey& key) const {
        return static_cast<std::size_t>(((hash(key) >> 32) * slots_.size()) >> 32);
    }
    std::size_t next(std::size_t i) const { return i + 1 == slots_.size() ? 0 : i + 1; }
    std::size_t distance(std::size_t from, std::size_t to) const {
        return to >= from ? to - from : to + slots_.size() - from;
    }
    std::size_t slot_of(const PublicKey& key) const {
        if (held_.empty())
            return kNone;
        for (std::size_t i = home(key);; i = next(i)) {
            if (slots_[i] == kEmpty)
                return kNone;
            if (held_[slots_[i]].key == key)
                return i;
        }
    }
    void place(std::size_t index) {
        std::size_t i = home(held_[index].key);
        while (slots_[i] != kEmpty)
            i = next(i);
        slots_[i] = static_cast<std::uint32_t>(index);
    }
    // The old slots are freed first: the table is never held twice.
    void rebuild(std::size_t slots) {
        slots_ = std::vector<std::uint32_t>();
        slots_.assign(slots, kEmpty);
        for (std::size_t i = 0; i < held_.size(); i++)
            place(i);
    }

    std::uint64_t hash_key_;
    std::deque<Held> held_;
    std::vector<std::uint32_t> slots_;
};

} // namespace wgd::netd
