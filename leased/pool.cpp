#include "leased/pool.hpp"

#include <algorithm>
#include <stdexcept>

namespace wgd::leased {

namespace detail {

template <class Addr, unsigned W>
Addr mask_of(unsigned len) {
    return len == 0 ? Addr{0} : static_cast<Addr>(~Addr{0} << (W - len));
}

namespace {

template <class Addr, unsigned W>
unsigned bit_at(Addr key, unsigned pos) {
    return static_cast<unsigned>((key >> (W - 1 - pos)) & 1);
}

// 2^(W-len), modulo 2^(bits of Count).
template <class Count, unsigned W>
Count capacity(unsigned len) {
    if (W - len >= sizeof(Count) * 8)
        return 0;
    return Count{1} << (W - len);
}

unsigned leading_zeros(std::uint32_t x) {
    return x == 0 ? 32 : static_cast<unsigned>(__builtin_clz(x));
}
unsigned leading_zeros(u128 x) {
    auto hi = static_cast<std::uint64_t>(x >> 64);
    auto lo = static_cast<std::uint64_t>(x);
    if (hi != 0)
        return static_cast<unsigned>(__builtin_clzll(hi));
    return lo == 0 ? 128 : 64 + static_cast<unsigned>(__builtin_clzll(lo));
}

template <class Count>
Count draw_below(RandomSource& rng, Count bound) {
    if constexpr (sizeof(Count) > 8)
        return rng.uniform128(bound);
    else
        return rng.uniform(bound);
}

} // namespace

template <class Addr, class Count, unsigned W>
CountingTrie<Addr, Count, W>::CountingTrie() {
    reset();
}

template <class Addr, class Count, unsigned W>
void CountingTrie<Addr, Count, W>::reset() {
    chunks_.clear();
    free_list_ = 0;
    next_unused_ = 1; // index 0 is "no child"
    live_ = 0;
    new_node(0, 0); // the root, index 1, always present
}

template <class Addr, class Count, unsigned W>
std::uint32_t CountingTrie<Addr, Count, W>::new_node(Addr key, unsigned len) {
    std::uint32_t i;
    if (free_list_ != 0) {
        i = free_list_;
        free_list_ = node(i).child[0];
    } else {
        if (next_unused_ == UINT32_MAX)
            throw std::length_error("address trie full");
        i = next_unused_++;
        if ((i >> kChunkBits) >= chunks_.size())
            chunks_.push_back(std::make_unique<Node[]>(std::size_t{1} << kChunkBits));
    }
    Node& n = node(i);
    n = Node{};
    n.key = key;
    n.len = static_cast<std::uint8_t>(len);
    live_++;
    return i;
}

template <class Addr, class Count, unsigned W>
void CountingTrie<Addr, Count, W>::free_node(std::uint32_t i) {
    node(i).child[0] = free_list_;
    free_list_ = i;
    live_--;
}

template <class Addr, class Count, unsigned W>
void CountingTrie<Addr, Count, W>::recompute(std::uint32_t i) {
    Node& n = node(i);
    Count blocked = 0, open = 0;
    for (std::uint32_t c : n.child)
        if (c != 0) {
            blocked += node(c).blocked;
            open += node(c).free_open;
        }
    const Count cap = capacity<Count, W>(n.len);
    n.blocked = n.blocks ? cap : blocked;
    n.free_open = n.blocks ? 0 : n.pools ? static_cast<Count>(cap - n.blocked) : open;
}

template <class Addr, class Count, unsigned W>
void CountingTrie<Addr, Count, W>::add(Mark mark, Addr key, unsigned len) {
    key &= mask_of<Addr, W>(len);
    std::uint32_t path[W + 3];
    unsigned depth = 0;
    std::uint32_t n = 1;
    path[depth++] = n;
    while (node(n).len != len) {
        const unsigned s = bit_at<Addr, W>(key, node(n).len);
        const std::uint32_t c = node(n).child[s];
        if (c == 0) {
            const std::uint32_t t = new_node(key, len);
            node(n).child[s] = t;
            path[depth++] = n = t;
            break;
        }
        const Node& cn = node(c);
        if (cn.len <= len && ((key ^ cn.key) & mask_of<Addr, W>(cn.len)) == 0) {
            path[depth++] = n = c;
            continue;
        }
        const unsigned common = std::min(
            {len, static_cast<unsigned>(cn.len), leading_zeros(static_cast<Addr>(key ^ cn.key))});
        const Addr child_key = cn.key;
        if (common == len) { // the new prefix sits between n and c
            const std::uint32_t t = new_node(key, len);
            node(t).child[bit_at<Addr, W>(child_key, len)] = c;
            node(n).child[s] = t;
            path[depth++] = n = t;
            break;
        }
        const std::uint32_t b = new_node(key & mask_of<Addr, W>(common), common);
        const std::uint32_t t = new_node(key, len);
        node(b).child[bit_at<Addr, W>(key, common)] = t;
        node(b).child[bit_at<Addr, W>(child_key, common)] = c;
        node(n).child[s] = b;
        path[depth++] = b;
        path[depth++] = n = t;
        break;
    }
    auto& count = mark == Mark::Pool ? node(n).pools : node(n).blocks;
    if (count == UINT16_MAX)
        throw std::length_error("too many identical marks on one prefix");
    count++;
    while (depth > 0)
        recompute(path[--depth]);
}

template <class Addr, class Count, unsigned W>
bool CountingTrie<Addr, Count, W>::remove(Mark mark, Addr key, unsigned len) {
    key &= mask_of<Addr, W>(len);
    std::uint32_t path[W + 3];
    unsigned depth = 0;
    std::uint32_t n = 1;
    path[depth++] = n;
    while (node(n).len != len) {
        const std::uint32_t c = node(n).child[bit_at<Addr, W>(key, node(n).len)];
        if (c == 0)
            return false;
        const Node& cn = node(c);
        if (cn.len > len || ((key ^ cn.key) & mask_of<Addr, W>(cn.len)) != 0)
            return false;
        path[depth++] = n = c;
    }
    auto& count = mark == Mark::Pool ? node(n).pools : node(n).blocks;
    if (count == 0)
        return false;
    count--;

    // Keep the invariant: a non-root node carries a mark or has two children.
    auto unmarked = [&](std::uint32_t i) { return node(i).pools == 0 && node(i).blocks == 0; };
    auto children = [&](std::uint32_t i) {
        return (node(i).child[0] != 0 ? 1u : 0u) + (node(i).child[1] != 0 ? 1u : 0u);
    };
    auto slot_in_parent = [&](std::uint32_t parent, std::uint32_t i) -> std::uint32_t& {
        return node(parent).child[bit_at<Addr, W>(node(i).key, node(parent).len)];
    };
    auto only_child = [&](std::uint32_t i) {
        return node(i).child[0] != 0 ? node(i).child[0] : node(i).child[1];
    };
    unsigned last = depth - 1;
    if (n != 1 && unmarked(n)) {
        const std::uint32_t parent = path[last - 1];
        if (children(n) == 0) {
            slot_in_parent(parent, n) = 0;
            free_node(n);
            last--;
            if (parent != 1 && unmarked(parent) && children(parent) == 1) {
                slot_in_parent(path[last - 1], parent) = only_child(parent);
                free_node(parent);
                last--;
            }
        } else if (children(n) == 1) {
            slot_in_parent(parent, n) = only_child(n);
            free_node(n);
            last--;
        }
    }
    for (unsigned i = last + 1; i-- > 0;)
        recompute(path[i]);
    // Give memory back once most of it is unused: copying the live nodes
    // costs O(live), paid for by the (3/4 of capacity) releases before it.
    if (chunks_.size() > 1 && live_ * 4 < (chunks_.size() << kChunkBits))
        compact();
    return true;
}

template <class Addr, class Count, unsigned W>
void CountingTrie<Addr, Count, W>::compact() {
    CountingTrie fresh;
    fresh.node(1) = node(1);
    // Iterative copy: (index in this trie, index of the copy in fresh).
    std::vector<std::pair<std::uint32_t, std::uint32_t>> todo{{1, 1}};
    while (!todo.empty()) {
        auto [from, to] = todo.back();
        todo.pop_back();
        for (unsigned s = 0; s < 2; s++) {
            const std::uint32_t c = node(from).child[s];
            if (c == 0)
                continue;
            const std::uint32_t copy = fresh.new_node(0, 0);
            fresh.node(copy) = node(c);
            fresh.node(to).child[s] = copy;
            todo.emplace_back(c, copy);
        }
    }
    *this = std::move(fresh);
}

template <class Addr, class Count, unsigned W>
std::optional<Addr> CountingTrie<Addr, Count, W>::draw(RandomSource& rng) const {
    const Count total = node(1).free_open;
    if (total == 0)
        return std::nullopt;
    Count r = draw_below(rng, total);
    std::uint32_t n = 1;
    bool in_pool = false;
    for (;;) {
        const Node& nd = node(n);
        in_pool = in_pool || nd.pools > 0;
        if (nd.len == W)
            return nd.key;
        // Both children are read below: fetch them together, one miss per level.
        if (nd.child[0] != 0)
            __builtin_prefetch(&node(nd.child[0]));
        if (nd.child[1] != 0)
            __builtin_prefetch(&node(nd.child[1]));
        bool descended = false;
        for (unsigned s = 0; s < 2 && !descended; s++) {
            const unsigned half_len = nd.len + 1u;
            const Addr half_base = nd.key | static_cast<Addr>(Addr{s} << (W - half_len));
            const std::uint32_t c = nd.child[s];
            if (c == 0) {
                const Count f = in_pool ? capacity<Count, W>(half_len) : 0;
                if (r < f)
                    return static_cast<Addr>(half_base + static_cast<Addr>(r));
                r -= f;
                continue;
            }
            const Node& cn = node(c);
            if (in_pool) {
                const Count outside = capacity<Count, W>(half_len) - capacity<Count, W>(cn.len);
                if (r < outside) {
                    Addr a = static_cast<Addr>(half_base + static_cast<Addr>(r));
                    if (a >= cn.key)
                        a = static_cast<Addr>(a + static_cast<Addr>(capacity<Count, W>(cn.len)));
                    return a;
                }
                r -= outside;
                const Count inside = capacity<Count, W>(cn.len) - cn.blocked;
                if (r < inside) {
                    n = c;
                    descended = true;
                } else {
                    r -= inside;
                }
            } else if (r < cn.free_open) {
                n = c;
                descended = true;
            } else {
                r -= cn.free_open;
            }
        }
        if (!descended)
            return std::nullopt; // unreachable while the counts are consistent
    }
}

template <class Addr, class Count, unsigned W>
bool CountingTrie<Addr, Count, W>::is_free(Addr a) const {
    bool covered = false;
    std::uint32_t n = 1;
    for (;;) {
        const Node& nd = node(n);
        if (nd.blocks > 0)
            return false;
        covered = covered || nd.pools > 0;
        if (nd.len == W)
            return covered;
        const std::uint32_t c = nd.child[bit_at<Addr, W>(a, nd.len)];
        if (c == 0 || ((a ^ node(c).key) & mask_of<Addr, W>(node(c).len)) != 0)
            return covered;
        n = c;
    }
}

template <class Addr, class Count, unsigned W>
bool CountingTrie<Addr, Count, W>::in_pool(Addr a) const {
    std::uint32_t n = 1;
    for (;;) {
        const Node& nd = node(n);
        if (nd.pools > 0)
            return true;
        if (nd.len == W)
            return false;
        const std::uint32_t c = nd.child[bit_at<Addr, W>(a, nd.len)];
        if (c == 0 || ((a ^ node(c).key) & mask_of<Addr, W>(node(c).len)) != 0)
            return false;
        n = c;
    }
}

template <class Addr, class Count, unsigned W>
Count CountingTrie<Addr, Count, W>::free_count() const {
    return node(1).free_open;
}

template <class Addr, class Count, unsigned W>
std::size_t CountingTrie<Addr, Count, W>::memory_bytes() const {
    return chunks_.size() * (sizeof(Node) << kChunkBits) + chunks_.capacity() * sizeof(chunks_[0]);
}

template class CountingTrie<std::uint32_t, std::uint64_t, 32>;
template class CountingTrie<u128, u128, 128>;

} // namespace detail

std::uint32_t to_bits(const Ip4& a) {
    return a.to_u32();
}
u128 to_bits(const Ip6& a) {
    u128 v = 0;
    for (auto b : a.bytes)
        v = (v << 8) | b;
    return v;
}
Ip4 ip4_from_bits(std::uint32_t v) {
    return Ip4::from_u32(v);
}
Ip6 ip6_from_bits(u128 v) {
    Ip6 a;
    for (int i = 15; i >= 0; i--, v >>= 8)
        a.bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v);
    return a;
}

namespace {
Ip4 from_bits(std::uint32_t v, const Ip4*) {
    return ip4_from_bits(v);
}
Ip6 from_bits(u128 v, const Ip6*) {
    return ip6_from_bits(v);
}
} // namespace

template <class Ip>
void AddressPool<Ip>::add_prefix(const Prefix& p) {
    using Mark = typename FamilyTraits<Ip>::Trie::Mark;
    constexpr unsigned W = FamilyTraits<Ip>::width;
    const auto base = to_bits(p.masked().addr);
    trie_.add(Mark::Pool, base, p.len);
    trie_.add(Mark::Block, base, W);
    if constexpr (W == 32)
        if (p.len < 31)
            trie_.add(Mark::Block, base | ~detail::mask_of<std::uint32_t, 32>(p.len), W);
    prefixes_++;
}

template <class Ip>
bool AddressPool<Ip>::remove_prefix(const Prefix& p) {
    using Mark = typename FamilyTraits<Ip>::Trie::Mark;
    constexpr unsigned W = FamilyTraits<Ip>::width;
    const auto base = to_bits(p.masked().addr);
    if (!trie_.remove(Mark::Pool, base, p.len))
        return false;
    trie_.remove(Mark::Block, base, W);
    if constexpr (W == 32)
        if (p.len < 31)
            trie_.remove(Mark::Block, base | ~detail::mask_of<std::uint32_t, 32>(p.len), W);
    prefixes_--;
    return true;
}

template <class Ip>
void AddressPool<Ip>::exclude(const Prefix& p) {
    trie_.add(FamilyTraits<Ip>::Trie::Mark::Block, to_bits(p.addr), p.len);
}

template <class Ip>
bool AddressPool<Ip>::unexclude(const Prefix& p) {
    return trie_.remove(FamilyTraits<Ip>::Trie::Mark::Block, to_bits(p.addr), p.len);
}

template <class Ip>
std::optional<Ip> AddressPool<Ip>::allocate(RandomSource& rng) {
    auto bits = trie_.draw(rng);
    if (!bits)
        return std::nullopt;
    trie_.add(FamilyTraits<Ip>::Trie::Mark::Block, *bits, FamilyTraits<Ip>::width);
    return from_bits(*bits, static_cast<const Ip*>(nullptr));
}

template <class Ip>
bool AddressPool<Ip>::take(const Ip& a) {
    if (!is_free(a))
        return false;
    trie_.add(FamilyTraits<Ip>::Trie::Mark::Block, to_bits(a), FamilyTraits<Ip>::width);
    return true;
}

template <class Ip>
void AddressPool<Ip>::release(const Ip& a) {
    trie_.remove(FamilyTraits<Ip>::Trie::Mark::Block, to_bits(a), FamilyTraits<Ip>::width);
}

template class AddressPool<Ip4>;
template class AddressPool<Ip6>;

} // namespace wgd::leased
