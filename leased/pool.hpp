// Address pools: the free addresses of one family and a uniform random draw
// among them.
//
// A counting, path-compressed binary trie over the address bits. Every fact
// is a "mark" on a prefix node: pool marks (routed prefixes) and block marks
// (leases, held plans, own addresses, static allowed IPs, the zero host and
// IPv4 broadcast of each pool prefix), each reference-counted so that
// overlapping prefixes and repeated facts never double-count. An address is
// free when some pool mark covers it and no block mark does. Each node keeps
// two counts for its subtree: how many addresses are blocked, and how many
// are free when no ancestor is a pool. From those, the free count of any
// subtree under any ancestor is O(1), so a draw, a mark or an unmark walks
// one root-to-leaf path: O(address width), whatever the pool size or the
// number of leases. Unmarked subtrees are not stored (a /64 pool is one
// node); a node exists only while it carries a mark or joins two subtrees,
// so memory returns to the baseline when every lease is released.
// Nodes live in chunks addressed by 32-bit indices, packed (no padding).
//
// Counts are kept modulo 2^W: the one count that would not fit (2^128, all
// of IPv6) is never a free count, because the zero host of a ::/0 pool is
// always blocked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "leased/random.hpp"
#include "privsep/addr.hpp"

namespace wgd::leased {

namespace detail {

template <class Addr, class Count, unsigned W>
class CountingTrie {
  public:
    enum class Mark { Pool, Block };
    CountingTrie();
    void add(Mark mark, Addr key, unsigned len);
    bool remove(Mark mark, Addr key, unsigned len); // false when no such mark
    std::optional<Addr> draw(RandomSource& rng) const;
    bool is_free(Addr a) const;
    bool in_pool(Addr a) const;
    Count free_count() const;
    std::size_t node_count() const { return live_; }
    std::size_t memory_bytes() const;

  private:
#pragma pack(push, 1)
    struct Node {
        Addr key;
        Count blocked;   // addresses of the subtree under some block mark
        Count free_open; // free addresses of the subtree when no ancestor is a pool
        std::uint32_t child[2];
        std::uint16_t pools;
        std::uint16_t blocks;
        std::uint8_t len;
    };
#pragma pack(pop)
    static constexpr unsigned kChunkBits = 12;

    Node& node(std::uint32_t i) {
        return chunks_[i >> kChunkBits][i & ((1u << kChunkBits) - 1)];
    }
    const Node& node(std::uint32_t i) const {
        return chunks_[i >> kChunkBits][i & ((1u << kChunkBits) - 1)];
    }
    std::uint32_t new_node(Addr key, unsigned len);
    void free_node(std::uint32_t i);
    void recompute(std::uint32_t i);
    void reset();
    void compact();

    std::vector<std::unique_ptr<Node[]>> chunks_;
    std::uint32_t free_list_ = 0;
    std::uint32_t next_unused_ = 0;
    std::size_t live_ = 0;
};

extern template class CountingTrie<std::uint32_t, std::uint64_t, 32>;
extern template class CountingTrie<u128, u128, 128>;

} // namespace detail

std::uint32_t to_bits(const Ip4& a);
u128 to_bits(const Ip6& a);
Ip4 ip4_from_bits(std::uint32_t v);
Ip6 ip6_from_bits(u128 v);

template <class Ip>
struct FamilyTraits;
template <>
struct FamilyTraits<Ip4> {
    using Prefix = Prefix4;
    using Count = std::uint64_t;
    using Trie = detail::CountingTrie<std::uint32_t, std::uint64_t, 32>;
    static constexpr unsigned width = 32;
};
template <>
struct FamilyTraits<Ip6> {
    using Prefix = Prefix6;
    using Count = u128;
    using Trie = detail::CountingTrie<u128, u128, 128>;
    static constexpr unsigned width = 128;
};

// The pool of one family. Every call is O(address width).
template <class Ip>
class AddressPool {
  public:
    using Prefix = typename FamilyTraits<Ip>::Prefix;
    using Count = typename FamilyTraits<Ip>::Count;

    // A routed prefix joins the pool (host bits are ignored); its zero host
    // (and for IPv4 shorter than /31 its broadcast) is excluded.
    void add_prefix(const Prefix& p);
    bool remove_prefix(const Prefix& p); // false when it was not added
    // Exclusions (own addresses, static allowed IPs): reference counted.
    void exclude(const Prefix& p);
    bool unexclude(const Prefix& p);

    // Draws uniformly among the free addresses and takes it; nullopt at
    // once when none is free.
    std::optional<Ip> allocate(RandomSource& rng);
    bool take(const Ip& a);    // takes a free address; false when not free
    void release(const Ip& a); // undoes one take() or allocate()

    bool is_free(const Ip& a) const { return trie_.is_free(to_bits(a)); }
    bool in_pool(const Ip& a) const { return trie_.in_pool(to_bits(a)); }
    Count free_count() const { return trie_.free_count(); }
    bool has_prefixes() const { return prefixes_ > 0; }
    std::size_t node_count() const { return trie_.node_count(); }
    std::size_t memory_bytes() const { return trie_.memory_bytes(); }

  private:
    typename FamilyTraits<Ip>::Trie trie_;
    std::size_t prefixes_ = 0;
};

using Pool4 = AddressPool<Ip4>;
using Pool6 = AddressPool<Ip6>;

extern template class AddressPool<Ip4>;
extern template class AddressPool<Ip6>;

} // namespace wgd::leased
