// The lease table's reverse index (address -> owner), small enough for
// millions of leases.
//
// The owner already holds its address, so the index stores nothing but a
// pointer to the owner (8 bytes a slot) and reads the key back through it
// (KeyOf). The owners must stay at a fixed address while indexed (elements
// of a node-based container), and an owner's key must not change while it is
// indexed: erase it first, change it, assign it again.
//
// Open addressing with linear probing, at most 70% full, and backward-shift
// deletion: an erase moves later entries of the run back into the hole, so
// there are no tombstones and a lookup stops at the first empty slot. The
// table halves when it falls under 1/8 full and is freed when empty.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/addr.hpp"

namespace wgd::leased {

// Ref: a pointer to the owner. KeyOf: Key(Ref), the owner's key. Hash:
// std::uint64_t(Key).
template <class Key, class Ref, class KeyOf, class Hash = AddressHash>
class RefIndex {
  public:
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    std::size_t capacity() const { return slots_.size(); }
    std::size_t memory_bytes() const { return slots_.capacity() * sizeof(Ref); }

    // The owner indexed under k, or nullptr.
    Ref find(const Key& k) const {
        if (size_ == 0)
            return nullptr;
        for (std::size_t i = home(k);; i = next(i)) {
            if (slots_[i] == nullptr)
                return nullptr;
            if (KeyOf{}(slots_[i]) == k)
                return slots_[i];
        }
    }

    // Indexes owner under its key; an owner already indexed under that key
    // is replaced.
    void assign(Ref owner) {
        if ((size_ + 1) * 10 > slots_.size() * 7)
            rehash(slots_.empty() ? kMinCapacity : slots_.size() * 2);
        const Key k = KeyOf{}(owner);
        for (std::size_t i = home(k);; i = next(i)) {
            if (slots_[i] == nullptr) {
                slots_[i] = owner;
                size_++;
                return;
            }
            if (KeyOf{}(slots_[i]) == k) {
                slots_[i] = owner;
                return;
            }
        }
    }

    // Room for n entries without a rehash: one growth instead of the
    // doublings that would each hold the old and the new slots at once.
    void reserve(std::size_t n) {
        std::size_t capacity = slots_.empty() ? kMinCapacity : slots_.size();
        while (n * 10 > capacity * 7)
            capacity *= 2;
        if (capacity != slots_.size())
            rehash(capacity);
    }

    // False when nothing is indexed under k.
    bool erase(const Key& k) {
        if (size_ == 0)
            return false;
        std::size_t hole = home(k);
        for (;; hole = next(hole)) {
            if (slots_[hole] == nullptr)
                return false;
            if (KeyOf{}(slots_[hole]) == k)
                break;
        }
        // Pull back every later entry of the run that may sit at the hole:
        // one whose home is not cyclically in (hole, j].
        for (std::size_t j = next(hole); slots_[j] != nullptr; j = next(j)) {
            const std::size_t from_home = (j - home(KeyOf{}(slots_[j]))) & mask();
            if (from_home >= ((j - hole) & mask())) {
                slots_[hole] = slots_[j];
                hole = j;
            }
        }
        slots_[hole] = nullptr;
        size_--;
        if (size_ == 0)
            std::vector<Ref>().swap(slots_);
        else if (slots_.size() > kMinCapacity && size_ * 8 < slots_.size())
            rehash(slots_.size() / 2);
        return true;
    }

    // f(owner) for every indexed owner, in no particular order. f must not
    // change the index.
    template <class F>
    void for_each(F f) const {
        for (Ref r : slots_)
            if (r != nullptr)
                f(r);
    }

  private:
    static constexpr std::size_t kMinCapacity = 16; // a power of two

    std::size_t mask() const { return slots_.size() - 1; }
    std::size_t next(std::size_t i) const { return (i + 1) & mask(); }
    std::size_t home(const Key& k) const { return static_cast<std::size_t>(Hash{}(k)) & mask(); }

    void rehash(std::size_t capacity) {
        std::vector<Ref> old(capacity, nullptr);
        old.swap(slots_);
        for (Ref r : old) {
            if (r == nullptr)
                continue;
            std::size_t i = home(KeyOf{}(r));
            while (slots_[i] != nullptr)
                i = next(i);
            slots_[i] = r;
        }
    }

    std::vector<Ref> slots_; // nullptr: empty; size a power of two
    std::size_t size_ = 0;
};

} // namespace wgd::leased
