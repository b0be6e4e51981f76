// Address pools: the free addresses of one family and a uniform random draw
// among them.
//
// Two layers, because the facts come in two very different numbers:
//
// - Marks (routed prefixes, own addresses, static allowed IPs, the zero host
//   and IPv4 broadcast of each pool prefix): few, of any length, overlapping,
//   reference counted. They live in a counting, path-compressed binary trie
//   (CountingTrie): an address is "open" when some pool mark covers it and no
//   block mark does. Each node keeps two counts for its subtree (blocked, and
//   free when no ancestor is a pool), so the number of open addresses below
//   any address (rank) and the open address of any rank (select) are one
//   root-to-leaf walk over a handful of nodes.
// - Leases (allocate/take/release): up to millions of single addresses. They
//   live in an order-statistic B+tree of sorted addresses (RankedSet), ~6
//   bytes per IPv4 lease and ~23 per IPv6 lease, 3 to 5 levels at 1,000,000.
//   A lease on an open address is "effective"; one that a later mark blocked
//   (an own address or a reservation placed on it, a removed prefix) is kept
//   aside as "shadowed" and moves back when the mark goes.
//
// A draw is exact: r uniform in [0, open - effective), one random number.
// With the effective leases l_0 < l_1 < ..., the free addresses below l_i
// number rank(l_i) - i, non-decreasing in i, so K = #{i : rank(l_i) - i <= r}
// is one descent of the B+tree, and the answer is select(r + K). Every call
// is O(log leases + trie depth), bounded by the address width; nothing is
// scanned. Memory returns to the baseline when every lease is released.
//
// Trie counts are kept modulo 2^W: the one count that would not fit (2^128,
// all of IPv6) is never a free count, because the zero host of a ::/0 pool is
// always blocked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "common/addr.hpp"
#include "leased/random.hpp"

namespace wgd::leased {

namespace detail {

template <class Addr, class Count, unsigned W>
class CountingTrie {
  public:
    enum class Mark { Pool, Block };
    CountingTrie();
    void add(Mark mark, Addr key, unsigned len);
    bool remove(Mark mark, Addr key, unsigned len); // false when no such mark
    // Open addresses (see above) below a; the open address of rank r.
    Count rank(Addr a) const;
    std::optional<Addr> select(Count r) const;
    // The open addresses when they are one run [first, first + size), the
    // usual case of one prefix: rank and select are then a subtraction.
    bool one_run(Addr& first) const {
        if (!runs_valid_ || runs_.size() != 1)
            return false;
        first = runs_[0].first;
        return true;
    }
    bool is_free(Addr a) const; // open
    bool in_pool(Addr a) const;
    Count free_count() const;
    std::size_t node_count() const { return live_; }
    std::size_t memory_bytes() const;

  private:
    // Not packed: members are bound by reference (and u128 counts must be
    // aligned), which a packed layout makes undefined behaviour. The trie
    // holds marks only (prefixes, exclusions), so its size barely matters.
    struct Node {
        Addr key;
        Count blocked;   // addresses of the subtree under some block mark
        Count free_open; // free addresses of the subtree when no ancestor is a pool
        std::uint32_t child[2];
        std::uint16_t pools;
        std::uint16_t blocks;
        std::uint8_t len;
    };
    static constexpr unsigned kChunkBits = 12;

    Node& node(std::uint32_t i) { return chunks_[i >> kChunkBits][i & ((1u << kChunkBits) - 1)]; }
    const Node& node(std::uint32_t i) const {
        return chunks_[i >> kChunkBits][i & ((1u << kChunkBits) - 1)];
    }
    std::uint32_t new_node(Addr key, unsigned len);
    void free_node(std::uint32_t i);
    void recompute(std::uint32_t i);
    void reset();
    void compact();
    // The open addresses as at most kMaxRuns sorted runs, rebuilt after each
    // mark change: with a few prefixes (the usual case) rank and select are
    // a search in a small array instead of a trie walk.
    struct Run {
        Addr first;
        Count before; // open addresses before this run
        Count size;
    };
    static constexpr std::size_t kMaxRuns = 32;
    void rebuild_runs();
    bool collect_runs(std::uint32_t n, bool in_pool, std::vector<Run>& runs) const;
    static bool emit_run(std::vector<Run>& runs, Addr first, Count size);
    Count rank_by_walk(Addr a) const;
    std::optional<Addr> select_by_walk(Count r) const;

    std::vector<Run> runs_;
    bool runs_valid_ = false;
    std::vector<std::unique_ptr<Node[]>> chunks_;
    std::uint32_t free_list_ = 0;
    std::uint32_t next_unused_ = 0;
    std::size_t live_ = 0;
};

// A set of addresses in a B+tree whose inner nodes know how many keys each
// child holds: membership, insert and erase in O(log n), and the length of
// the prefix of the sorted keys on which a monotone predicate holds.
template <class Addr>
class RankedSet {
  public:
    RankedSet() = default;
    RankedSet(RankedSet&&) noexcept = default;
    RankedSet& operator=(RankedSet&&) noexcept = default;
    ~RankedSet();

    bool insert(Addr k); // false when present
    bool erase(Addr k);  // false when absent
    bool contains(Addr k) const;
    std::size_t size() const { return size_; }
    // Keys in [lo, hi], ascending.
    void collect(Addr lo, Addr hi, std::vector<Addr>& out) const;
    // With K the number of leading keys k_i (ascending) for which
    // pred(k_i, i) holds (pred true on a prefix of the keys, false after
    // it): inserts key_at(K), which must fall between k_{K-1} and k_K, and
    // returns it. One descent finds K and inserts: the new key goes exactly
    // where the search for K ended. nullopt (nothing inserted) when key_at
    // gives none or a key out of that place.
    // Defined in pool.cpp, its only user.
    template <class Pred, class KeyAt>
    std::optional<Addr> insert_leading(Pred pred, KeyAt key_at);
    std::size_t node_count() const { return nodes_; }
    std::size_t memory_bytes() const;

  private:
    // 1 KiB leaves (256 IPv4, 128 IPv6 in one /64): measured faster at
    // 1,000,000 leases than 512 B or 2 KiB, the whole leaf fetched at once.
    static constexpr unsigned kLeafCap = 1024 / sizeof(Addr);
    static constexpr unsigned kInnerCap = 32;
    struct Node {
        bool leaf;
        std::uint16_t n = 0;
        explicit Node(bool is_leaf) : leaf(is_leaf) {}
        virtual ~Node() = default;
    };
    struct Leaf final : Node {
        Leaf() : Node(true) {}
        Addr keys[kLeafCap];
    };
    struct Inner final : Node {
        Inner() : Node(false) {}
        Addr first[kInnerCap];          // the smallest key of each child
        std::uint32_t count[kInnerCap]; // keys under each child
        std::unique_ptr<Node> kid[kInnerCap];
    };
    // A descent: the inner nodes passed and the child taken in each. The
    // height stays below log16(most leaves ever) + 2: a level is added only
    // when the root fills up with 32 children.
    struct Step {
        Inner* node;
        unsigned slot;
    };
    static constexpr unsigned kMaxDepth = 32;
    static Addr min_key(const Node& n);
    static std::uint32_t total(const Node& n);
    static unsigned route(const Inner& in, Addr k);
    // The number of leading entries for which pred holds, branch-free.
    template <class Pred>
    static unsigned count_true(unsigned n, Pred pred);
    // Fetches the lines of a node about to be searched all at once, so
    // that their misses overlap instead of following one another.
    static void prefetch(const Node* n);
    void insert_at(Step* path, unsigned depth, Leaf& leaf, unsigned pos, Addr k);
    bool erase_from(Node& n, Addr k);
    void merge_if_small(Inner& in, unsigned j);
    void collect_in(const Node& n, Addr lo, Addr hi, std::vector<Addr>& out) const;

    std::unique_ptr<Node> root_;
    std::size_t size_ = 0;
    std::size_t nodes_ = 0;
    std::size_t leaves_ = 0;
};

// IPv6 leases: 64-bit keys (half the bytes, twice the keys per cache line)
// while every lease is in one /64 (a /64 pool, the usual case), 128-bit
// keys once they are not. The switch copies the leases once; the set goes
// back to 64-bit keys when it empties.
class LeaseSet6 {
  public:
    bool insert(u128 k);
    bool erase(u128 k);
    bool contains(u128 k) const;
    std::size_t size() const { return wide_ ? wide_set_.size() : narrow_.size(); }
    void collect(u128 lo, u128 hi, std::vector<u128>& out) const;
    // As RankedSet::insert_leading; defined in pool.cpp.
    template <class Pred, class KeyAt>
    std::optional<u128> insert_leading(Pred pred, KeyAt key_at);
    std::size_t node_count() const { return narrow_.node_count() + wide_set_.node_count(); }
    std::size_t memory_bytes() const { return narrow_.memory_bytes() + wide_set_.memory_bytes(); }

  private:
    bool narrow_fits(u128 k) const {
        return narrow_.size() == 0 || static_cast<std::uint64_t>(k >> 64) == high_;
    }
    u128 whole(std::uint64_t low) const { return (u128{high_} << 64) | low; }
    void widen();

    bool wide_ = false;
    std::uint64_t high_ = 0; // the /64 of every narrow key
    RankedSet<std::uint64_t> narrow_;
    RankedSet<u128> wide_set_;
};

extern template class RankedSet<std::uint32_t>;
extern template class RankedSet<std::uint64_t>;
extern template class RankedSet<u128>;
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
    using Leases = detail::RankedSet<std::uint32_t>;
    static constexpr unsigned width = 32;
};
template <>
struct FamilyTraits<Ip6> {
    using Prefix = Prefix6;
    using Count = u128;
    using Trie = detail::CountingTrie<u128, u128, 128>;
    using Leases = detail::LeaseSet6;
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

    bool is_free(const Ip& a) const;
    bool in_pool(const Ip& a) const { return trie_.in_pool(to_bits(a)); }
    Count free_count() const {
        return static_cast<Count>(trie_.free_count() - static_cast<Count>(leases_.size()));
    }
    bool has_prefixes() const { return prefixes_ > 0; }
    // Open addresses (in the pool, not blocked; leased ones included) inside p.
    Count open_in(const Prefix& p) const;
    std::size_t node_count() const { return trie_.node_count() + leases_.node_count(); }
    std::size_t memory_bytes() const;

  private:
    using Bits = decltype(to_bits(std::declval<Ip>()));
    // After a mark on [lo, hi] changed: leases whose openness may have
    // changed move between the effective set and the shadowed one.
    void reconcile(Bits lo, Bits hi, bool effective_may_close, bool shadowed_may_open);
    void reconcile(const Prefix& p, bool effective_may_close, bool shadowed_may_open);

    typename FamilyTraits<Ip>::Trie trie_;
    typename FamilyTraits<Ip>::Leases leases_; // effective leases: on open addresses
    std::set<Bits> shadowed_;                  // leases on addresses a mark blocked since
    std::size_t prefixes_ = 0;
};

using Pool4 = AddressPool<Ip4>;
using Pool6 = AddressPool<Ip6>;

extern template class AddressPool<Ip4>;
extern template class AddressPool<Ip6>;

} // namespace wgd::leased
