#include "leased/pool.hpp"

#include "common/fatal.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>

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

// Uniform in [0, bound) from 64 random bits by multiplication: the high
// word of x * bound, rejecting the few low words that would bias it
// (Lemire's method). The division that finds them runs only on the rare
// draws that land near a boundary, instead of two divisions per draw.
inline std::uint64_t draw_below64(RandomSource& rng, std::uint64_t bound) {
    u128 product = u128{rng.next64()} * bound;
    auto low = static_cast<std::uint64_t>(product);
    if (low < bound) {
        const std::uint64_t threshold = (0 - bound) % bound;
        while (low < threshold) {
            product = u128{rng.next64()} * bound;
            low = static_cast<std::uint64_t>(product);
        }
    }
    return static_cast<std::uint64_t>(product >> 64);
}

template <class Count>
Count draw_below(RandomSource& rng, Count bound) {
    if constexpr (sizeof(Count) > 8) {
        if (bound > ~std::uint64_t{0})
            return rng.uniform128(bound);
        return draw_below64(rng, static_cast<std::uint64_t>(bound));
    } else {
        return draw_below64(rng, bound);
    }
}

} // namespace

template <class Addr, class Count, unsigned W>
CountingTrie<Addr, Count, W>::CountingTrie() {
    reset();
    rebuild_runs();
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
            fatal("address trie full"); // 4 billion nodes: never, but not silently
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
        fatal("too many identical marks on one prefix");
    count++;
    while (depth > 0)
        recompute(path[--depth]);
    rebuild_runs();
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
    rebuild_runs();
    return true;
}

template <class Addr, class Count, unsigned W>
void CountingTrie<Addr, Count, W>::compact() {
    CountingTrie fresh;
    fresh.node(1) = node(1);
    // Iterative copy: (index in this trie, index of the copy in fresh).
    std::vector<std::pair<std::uint32_t, std::uint32_t>> worklist{{1, 1}};
    while (!worklist.empty()) {
        auto [from, to] = worklist.back();
        worklist.pop_back();
        for (unsigned s = 0; s < 2; s++) {
            const std::uint32_t c = node(from).child[s];
            if (c == 0)
                continue;
            const std::uint32_t copy = fresh.new_node(0, 0);
            fresh.node(copy) = node(c);
            fresh.node(to).child[s] = copy;
            worklist.emplace_back(c, copy);
        }
    }
    *this = std::move(fresh);
}

template <class Addr, class Count, unsigned W>
Count CountingTrie<Addr, Count, W>::rank(Addr a) const {
    if (!runs_valid_)
        return rank_by_walk(a);
    // The last run starting at or before a.
    auto it = std::upper_bound(runs_.begin(), runs_.end(), a,
                               [](Addr x, const Run& run) { return x < run.first; });
    if (it == runs_.begin())
        return 0;
    --it;
    const Count offset = static_cast<Count>(static_cast<Addr>(a - it->first));
    return static_cast<Count>(it->before + std::min(offset, it->size));
}

template <class Addr, class Count, unsigned W>
std::optional<Addr> CountingTrie<Addr, Count, W>::select(Count r) const {
    if (!runs_valid_)
        return select_by_walk(r);
    if (r >= node(1).free_open)
        return std::nullopt;
    // The last run with before <= r.
    auto it = std::upper_bound(runs_.begin(), runs_.end(), r,
                               [](Count x, const Run& run) { return x < run.before; });
    --it;
    return static_cast<Addr>(it->first + static_cast<Addr>(r - it->before));
}

template <class Addr, class Count, unsigned W>
bool CountingTrie<Addr, Count, W>::emit_run(std::vector<Run>& runs, Addr first, Count size) {
    if (size == 0)
        return true;
    if (!runs.empty()) {
        Run& last = runs.back();
        if (static_cast<Addr>(last.first + static_cast<Addr>(last.size)) == first) {
            last.size += size;
            return true;
        }
        if (runs.size() == kMaxRuns)
            return false;
        runs.push_back(Run{first, static_cast<Count>(last.before + last.size), size});
        return true;
    }
    runs.push_back(Run{first, 0, size});
    return true;
}

// Open runs of n's subtree in address order; false once there are too many.
template <class Addr, class Count, unsigned W>
bool CountingTrie<Addr, Count, W>::collect_runs(std::uint32_t n, bool in_pool,
                                                std::vector<Run>& runs) const {
    const Node& nd = node(n);
    if (nd.blocks > 0)
        return true;
    in_pool = in_pool || nd.pools > 0;
    if (!in_pool && nd.free_open == 0)
        return true;
    // Nothing open below: skipped without a walk. Thousands of adjacent
    // blocked hosts (reservations 10.0.0.2, .3, ... of a wg-quick gateway)
    // make a few runs but a big subtree, which every mark change walked.
    // (The root's capacity, 2^W, does not fit a Count; it is never skipped.)
    if (in_pool && nd.len > 0 && nd.blocked == capacity<Count, W>(nd.len))
        return true;
    if (nd.len == W)
        return emit_run(runs, nd.key, 1);
    const unsigned half_len = nd.len + 1u;
    for (unsigned s = 0; s < 2; s++) {
        const Addr half_base = nd.key | static_cast<Addr>(Addr{s} << (W - half_len));
        const Count half_cap = capacity<Count, W>(half_len);
        const std::uint32_t c = nd.child[s];
        if (c == 0) {
            if (in_pool && !emit_run(runs, half_base, half_cap))
                return false;
            continue;
        }
        const Node& cn = node(c);
        const Count before = static_cast<Count>(static_cast<Addr>(cn.key - half_base));
        const Count child_cap = capacity<Count, W>(cn.len);
        if (in_pool && !emit_run(runs, half_base, before))
            return false;
        if (!collect_runs(c, in_pool, runs))
            return false;
        if (in_pool && !emit_run(runs, static_cast<Addr>(cn.key + static_cast<Addr>(child_cap)),
                                 static_cast<Count>(half_cap - child_cap - before)))
            return false;
    }
    return true;
}

template <class Addr, class Count, unsigned W>
void CountingTrie<Addr, Count, W>::rebuild_runs() {
    runs_.clear();
    runs_valid_ = collect_runs(1, false, runs_);
    if (!runs_valid_)
        runs_.clear();
}

template <class Addr, class Count, unsigned W>
Count CountingTrie<Addr, Count, W>::rank_by_walk(Addr a) const {
    Count below = 0;
    std::uint32_t n = 1;
    bool in_pool = false;
    for (;;) {
        const Node& nd = node(n);
        if (nd.blocks > 0 || nd.len == W)
            return below; // nothing open in this subtree before a
        in_pool = in_pool || nd.pools > 0;
        const unsigned half_len = nd.len + 1u;
        // Open addresses of a child slot's half, or of its part outside the child.
        auto half_open = [&](std::uint32_t c) -> Count {
            if (c == 0)
                return in_pool ? capacity<Count, W>(half_len) : Count{0};
            const Node& cn = node(c);
            return in_pool ? static_cast<Count>(capacity<Count, W>(half_len) - cn.blocked)
                           : cn.free_open;
        };
        const unsigned s = bit_at<Addr, W>(a, nd.len);
        if (s == 1)
            below += half_open(nd.child[0]);
        const Addr half_base = nd.key | static_cast<Addr>(Addr{s} << (W - half_len));
        const Count before_a = static_cast<Count>(static_cast<Addr>(a - half_base));
        const std::uint32_t c = nd.child[s];
        if (c == 0)
            return below + (in_pool ? before_a : Count{0});
        const Node& cn = node(c);
        const Count child_offset = static_cast<Count>(static_cast<Addr>(cn.key - half_base));
        if (((a ^ cn.key) & mask_of<Addr, W>(cn.len)) == 0) { // a is inside the child
            if (in_pool)
                below += child_offset;
            n = c;
            continue;
        }
        if (a < cn.key)
            return below + (in_pool ? before_a : Count{0});
        // The whole child lies before a.
        if (!in_pool)
            return below + cn.free_open;
        return below + static_cast<Count>(before_a - cn.blocked);
    }
}

template <class Addr, class Count, unsigned W>
std::optional<Addr> CountingTrie<Addr, Count, W>::select_by_walk(Count r) const {
    if (r >= node(1).free_open)
        return std::nullopt;
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
                // In address order: before the child, inside it, after it.
                const Count before = static_cast<Count>(static_cast<Addr>(cn.key - half_base));
                if (r < before)
                    return static_cast<Addr>(half_base + static_cast<Addr>(r));
                r -= before;
                const Count inside = capacity<Count, W>(cn.len) - cn.blocked;
                if (r < inside) {
                    n = c;
                    descended = true;
                    continue;
                }
                r -= inside;
                const Count after = static_cast<Count>(capacity<Count, W>(half_len) -
                                                       capacity<Count, W>(cn.len) - before);
                if (r < after)
                    return static_cast<Addr>(cn.key +
                                             static_cast<Addr>(capacity<Count, W>(cn.len)) +
                                             static_cast<Addr>(r));
                r -= after;
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
    return chunks_.size() * (sizeof(Node) << kChunkBits) + chunks_.capacity() * sizeof(chunks_[0]) +
           runs_.capacity() * sizeof(Run);
}

template class CountingTrie<std::uint32_t, std::uint64_t, 32>;
template class CountingTrie<u128, u128, 128>;

template <class Addr>
RankedSet<Addr>::~RankedSet() {
    // Leaves first, level by level, so that a deep tree is not freed by
    // deep recursion (it is at most ~6 levels, but stay iterative anyway).
    std::vector<std::unique_ptr<Node>> worklist;
    if (root_)
        worklist.push_back(std::move(root_));
    while (!worklist.empty()) {
        auto n = std::move(worklist.back());
        worklist.pop_back();
        if (!n->leaf) {
            auto& in = static_cast<Inner&>(*n);
            for (unsigned j = 0; j < in.n; j++)
                worklist.push_back(std::move(in.kid[j]));
        }
    }
}

template <class Addr>
Addr RankedSet<Addr>::min_key(const Node& n) {
    return n.leaf ? static_cast<const Leaf&>(n).keys[0] : static_cast<const Inner&>(n).first[0];
}

template <class Addr>
std::uint32_t RankedSet<Addr>::total(const Node& n) {
    if (n.leaf)
        return n.n;
    const auto& in = static_cast<const Inner&>(n);
    std::uint32_t sum = 0;
    for (unsigned j = 0; j < in.n; j++)
        sum += in.count[j];
    return sum;
}

template <class Addr>
unsigned RankedSet<Addr>::route(const Inner& in, Addr k) {
    unsigned j = 0;
    while (j + 1 < in.n && in.first[j + 1] <= k)
        j++;
    return j;
}

template <class Addr>
bool RankedSet<Addr>::contains(Addr k) const {
    if (!root_)
        return false;
    const Node* n = root_.get();
    while (!n->leaf) {
        const auto& in = static_cast<const Inner&>(*n);
        n = in.kid[route(in, k)].get();
    }
    const auto& leaf = static_cast<const Leaf&>(*n);
    const Addr* end = leaf.keys + leaf.n;
    const Addr* it = std::lower_bound(leaf.keys, end, k);
    return it != end && *it == k;
}

template <class Addr>
template <class Pred>
unsigned RankedSet<Addr>::count_true(unsigned n, Pred pred) {
    if (n == 0)
        return 0;
    unsigned base = 0, len = n; // the answer is in [base, base + len]
    while (len > 1) {
        const unsigned half = len / 2;
        base = pred(base + half) ? base + half : base;
        len -= half;
    }
    return base + (pred(base) ? 1u : 0u);
}

template <class Addr>
void RankedSet<Addr>::prefetch(const Node* n) {
    // A leaf, or the searched part of an inner node (all but kid[]).
    constexpr std::size_t searched = sizeof(Inner) - sizeof(Inner::kid);
    constexpr std::size_t bytes = sizeof(Leaf) > searched ? sizeof(Leaf) : searched;
    const auto at = reinterpret_cast<std::uintptr_t>(n);
    for (std::uintptr_t line = at & ~std::uintptr_t{63}; line < at + bytes; line += 64)
        __builtin_prefetch(reinterpret_cast<const void*>(line));
}

template <class Addr>
template <class Pred, class KeyAt>
std::optional<Addr> RankedSet<Addr>::insert_leading(Pred pred, KeyAt key_at) {
    if (!root_) {
        const std::optional<Addr> k = key_at(std::size_t{0});
        if (k)
            insert(*k);
        return k;
    }
    Step path[kMaxDepth];
    unsigned depth = 0;
    std::size_t before = 0;
    Node* n = root_.get();
    while (!n->leaf) {
        auto& in = static_cast<Inner&>(*n);
        std::uint32_t offset[kInnerCap];
        std::uint32_t sum = 0;
        for (unsigned j = 0; j < in.n; j++) {
            offset[j] = sum;
            sum += in.count[j];
        }
        // The last child whose first key satisfies pred (child 0 otherwise):
        // the keys before K end in it, so the new key belongs in it.
        const unsigned holding =
            count_true(in.n, [&](unsigned j) { return pred(in.first[j], before + offset[j]); });
        const unsigned j = holding > 0 ? holding - 1 : 0;
        before += offset[j];
        n = in.kid[j].get();
        prefetch(n);
        path[depth++] = Step{&in, j};
    }
    auto& leaf = static_cast<Leaf&>(*n);
    const unsigned pos =
        count_true(leaf.n, [&](unsigned i) { return pred(leaf.keys[i], before + i); });
    const std::optional<Addr> k = key_at(before + pos);
    if (!k || (pos > 0 && !(leaf.keys[pos - 1] < *k)) || (pos < leaf.n && !(*k < leaf.keys[pos])))
        return std::nullopt;
    insert_at(path, depth, leaf, pos, *k);
    return k;
}

template <class Addr>
bool RankedSet<Addr>::insert(Addr k) {
    if (!root_) {
        auto leaf = std::make_unique<Leaf>();
        leaf->keys[0] = k;
        leaf->n = 1;
        root_ = std::move(leaf);
        nodes_ = leaves_ = size_ = 1;
        return true;
    }
    Step path[kMaxDepth];
    unsigned depth = 0;
    Node* n = root_.get();
    while (!n->leaf) {
        auto& in = static_cast<Inner&>(*n);
        const unsigned j = route(in, k);
        path[depth++] = Step{&in, j};
        n = in.kid[j].get();
    }
    auto& leaf = static_cast<Leaf&>(*n);
    const Addr* end = leaf.keys + leaf.n;
    const Addr* it = std::lower_bound(static_cast<const Addr*>(leaf.keys), end, k);
    if (it != end && *it == k)
        return false;
    insert_at(path, depth, leaf, static_cast<unsigned>(it - leaf.keys), k);
    return true;
}

// Puts k at pos of the leaf the descent path ends in, then counts it on the
// way back up, splitting full nodes as it goes.
template <class Addr>
void RankedSet<Addr>::insert_at(Step* path, unsigned depth, Leaf& leaf, unsigned pos, Addr k) {
    std::copy_backward(leaf.keys + pos, leaf.keys + leaf.n, leaf.keys + leaf.n + 1);
    leaf.keys[pos] = k;
    leaf.n++;
    size_++;
    std::unique_ptr<Node> right; // the new right sibling of the node below, if it split
    Addr right_first{};
    std::uint32_t right_count = 0;
    if (leaf.n == kLeafCap) {
        auto half = std::make_unique<Leaf>();
        const unsigned keep = kLeafCap / 2;
        half->n = static_cast<std::uint16_t>(kLeafCap - keep);
        std::copy(leaf.keys + keep, leaf.keys + kLeafCap, half->keys);
        leaf.n = static_cast<std::uint16_t>(keep);
        right_first = half->keys[0];
        right_count = half->n;
        right = std::move(half);
        nodes_++;
        leaves_++;
    }
    for (unsigned d = depth; d-- > 0;) {
        Inner& in = *path[d].node;
        const unsigned j = path[d].slot;
        if (k < in.first[j])
            in.first[j] = k;
        if (!right) {
            in.count[j]++;
            continue;
        }
        in.count[j] = in.count[j] + 1 - right_count;
        for (unsigned i = in.n; i > j + 1; i--) {
            in.first[i] = in.first[i - 1];
            in.count[i] = in.count[i - 1];
            in.kid[i] = std::move(in.kid[i - 1]);
        }
        in.first[j + 1] = right_first;
        in.count[j + 1] = right_count;
        in.kid[j + 1] = std::move(right);
        in.n++;
        if (in.n < kInnerCap)
            continue;
        auto half = std::make_unique<Inner>();
        const unsigned keep = kInnerCap / 2;
        std::uint32_t moved = 0;
        for (unsigned i = keep; i < kInnerCap; i++) {
            half->first[i - keep] = in.first[i];
            half->count[i - keep] = in.count[i];
            half->kid[i - keep] = std::move(in.kid[i]);
            moved += in.count[i];
        }
        half->n = static_cast<std::uint16_t>(kInnerCap - keep);
        in.n = static_cast<std::uint16_t>(keep);
        right_first = half->first[0];
        right_count = moved;
        right = std::move(half);
        nodes_++;
    }
    if (right) {
        auto root = std::make_unique<Inner>();
        root->first[0] = min_key(*root_);
        root->count[0] = total(*root_);
        root->kid[0] = std::move(root_);
        root->first[1] = right_first;
        root->count[1] = right_count;
        root->kid[1] = std::move(right);
        root->n = 2;
        root_ = std::move(root);
        nodes_++;
    }
}

template <class Addr>
bool RankedSet<Addr>::erase(Addr k) {
    if (!root_ || !erase_from(*root_, k))
        return false;
    size_--;
    if (root_->n == 0) {
        root_.reset();
        nodes_ = leaves_ = 0;
    } else if (!root_->leaf && root_->n == 1) {
        auto& in = static_cast<Inner&>(*root_);
        auto only = std::move(in.kid[0]);
        root_ = std::move(only);
        nodes_--;
    }
    return true;
}

template <class Addr>
bool RankedSet<Addr>::erase_from(Node& n, Addr k) {
    if (n.leaf) {
        auto& leaf = static_cast<Leaf&>(n);
        Addr* end = leaf.keys + leaf.n;
        Addr* it = std::lower_bound(leaf.keys, end, k);
        if (it == end || *it != k)
            return false;
        std::copy(it + 1, end, it);
        leaf.n--;
        return true;
    }
    auto& in = static_cast<Inner&>(n);
    const unsigned j = route(in, k);
    if (!erase_from(*in.kid[j], k))
        return false;
    in.count[j]--;
    if (in.kid[j]->n == 0) {
        nodes_--;
        if (in.kid[j]->leaf)
            leaves_--;
        for (unsigned i = j; i + 1 < in.n; i++) {
            in.first[i] = in.first[i + 1];
            in.count[i] = in.count[i + 1];
            in.kid[i] = std::move(in.kid[i + 1]);
        }
        in.n--;
        in.kid[in.n].reset();
        return true;
    }
    in.first[j] = min_key(*in.kid[j]);
    merge_if_small(in, j);
    return true;
}

// Keeps nodes at least about a quarter full under churn, so that memory
// follows the number of keys: a small child joins a neighbour it fits in.
template <class Addr>
void RankedSet<Addr>::merge_if_small(Inner& in, unsigned j) {
    Node& child = *in.kid[j];
    const unsigned cap = child.leaf ? kLeafCap : kInnerCap;
    if (child.n >= cap / 4 || in.n < 2)
        return;
    const unsigned left = j > 0 ? j - 1 : j;
    const unsigned right = left + 1;
    Node& a = *in.kid[left];
    Node& b = *in.kid[right];
    if (a.n + b.n > cap * 3 / 4)
        return;
    if (a.leaf) {
        auto& la = static_cast<Leaf&>(a);
        auto& lb = static_cast<Leaf&>(b);
        std::copy(lb.keys, lb.keys + lb.n, la.keys + la.n);
        la.n = static_cast<std::uint16_t>(la.n + lb.n);
        leaves_--;
    } else {
        auto& ia = static_cast<Inner&>(a);
        auto& ib = static_cast<Inner&>(b);
        for (unsigned i = 0; i < ib.n; i++) {
            ia.first[ia.n + i] = ib.first[i];
            ia.count[ia.n + i] = ib.count[i];
            ia.kid[ia.n + i] = std::move(ib.kid[i]);
        }
        ia.n = static_cast<std::uint16_t>(ia.n + ib.n);
    }
    nodes_--;
    in.count[left] += in.count[right];
    for (unsigned i = right; i + 1 < in.n; i++) {
        in.first[i] = in.first[i + 1];
        in.count[i] = in.count[i + 1];
        in.kid[i] = std::move(in.kid[i + 1]);
    }
    in.n--;
    in.kid[in.n].reset();
}

template <class Addr>
void RankedSet<Addr>::collect(Addr lo, Addr hi, std::vector<Addr>& out) const {
    if (root_ && lo <= hi)
        collect_in(*root_, lo, hi, out);
}

template <class Addr>
void RankedSet<Addr>::collect_in(const Node& n, Addr lo, Addr hi, std::vector<Addr>& out) const {
    if (n.leaf) {
        const auto& leaf = static_cast<const Leaf&>(n);
        for (const Addr* it = std::lower_bound(leaf.keys, leaf.keys + leaf.n, lo);
             it != leaf.keys + leaf.n && *it <= hi; ++it)
            out.push_back(*it);
        return;
    }
    const auto& in = static_cast<const Inner&>(n);
    for (unsigned j = route(in, lo); j < in.n && in.first[j] <= hi; j++)
        collect_in(*in.kid[j], lo, hi, out);
}

template <class Addr>
std::size_t RankedSet<Addr>::memory_bytes() const {
    return leaves_ * sizeof(Leaf) + (nodes_ - leaves_) * sizeof(Inner);
}

template class RankedSet<std::uint32_t>;
template class RankedSet<std::uint64_t>;
template class RankedSet<u128>;

void LeaseSet6::widen() {
    std::vector<std::uint64_t> lows;
    lows.reserve(narrow_.size());
    narrow_.collect(0, ~std::uint64_t{0}, lows);
    for (std::uint64_t low : lows)
        wide_set_.insert(whole(low));
    narrow_ = RankedSet<std::uint64_t>{};
    wide_ = true;
}

bool LeaseSet6::insert(u128 k) {
    if (!wide_) {
        if (narrow_fits(k)) {
            high_ = static_cast<std::uint64_t>(k >> 64);
            return narrow_.insert(static_cast<std::uint64_t>(k));
        }
        widen();
    }
    return wide_set_.insert(k);
}

bool LeaseSet6::erase(u128 k) {
    if (!wide_)
        return narrow_.size() > 0 && static_cast<std::uint64_t>(k >> 64) == high_ &&
               narrow_.erase(static_cast<std::uint64_t>(k));
    const bool erased = wide_set_.erase(k);
    if (wide_set_.size() == 0)
        wide_ = false;
    return erased;
}

bool LeaseSet6::contains(u128 k) const {
    if (wide_)
        return wide_set_.contains(k);
    return narrow_.size() > 0 && static_cast<std::uint64_t>(k >> 64) == high_ &&
           narrow_.contains(static_cast<std::uint64_t>(k));
}

void LeaseSet6::collect(u128 lo, u128 hi, std::vector<u128>& out) const {
    if (wide_) {
        wide_set_.collect(lo, hi, out);
        return;
    }
    const u128 first = whole(0), last = whole(~std::uint64_t{0});
    if (narrow_.size() == 0 || hi < first || lo > last)
        return;
    std::vector<std::uint64_t> lows;
    narrow_.collect(lo < first ? 0 : static_cast<std::uint64_t>(lo),
                    hi > last ? ~std::uint64_t{0} : static_cast<std::uint64_t>(hi), lows);
    for (std::uint64_t low : lows)
        out.push_back(whole(low));
}

template <class Pred, class KeyAt>
std::optional<u128> LeaseSet6::insert_leading(Pred pred, KeyAt key_at) {
    if (wide_)
        return wide_set_.insert_leading(pred, key_at);
    if (narrow_.size() == 0) {
        const std::optional<u128> k = key_at(std::size_t{0});
        if (k)
            insert(*k);
        return k;
    }
    // The answer outside the /64 of the leases (a pool wider than a /64) is
    // inserted after the switch to 128-bit keys.
    std::optional<u128> outside;
    const auto low = narrow_.insert_leading(
        [&](std::uint64_t lease, std::size_t index) { return pred(whole(lease), index); },
        [&](std::size_t k) -> std::optional<std::uint64_t> {
            const std::optional<u128> got = key_at(k);
            if (!got)
                return std::nullopt;
            if (!narrow_fits(*got)) {
                outside = got;
                return std::nullopt;
            }
            return static_cast<std::uint64_t>(*got);
        });
    if (low)
        return whole(*low);
    if (!outside)
        return std::nullopt;
    widen();
    if (!wide_set_.insert(*outside))
        return std::nullopt;
    return outside;
}

} // namespace detail

std::uint32_t to_bits(const Ip4& a) {
    return a.to_u32();
}
namespace {
// Network byte order <-> host order of one 64-bit half.
std::uint64_t big_endian64(std::uint64_t v) {
    if constexpr (std::endian::native == std::endian::little)
        return __builtin_bswap64(v);
    else
        return v;
}
} // namespace

u128 to_bits(const Ip6& a) {
    std::uint64_t high, low;
    std::memcpy(&high, a.bytes.data(), 8);
    std::memcpy(&low, a.bytes.data() + 8, 8);
    return (u128{big_endian64(high)} << 64) | big_endian64(low);
}
Ip4 ip4_from_bits(std::uint32_t v) {
    return Ip4::from_u32(v);
}
Ip6 ip6_from_bits(u128 v) {
    Ip6 a;
    const std::uint64_t high = big_endian64(static_cast<std::uint64_t>(v >> 64));
    const std::uint64_t low = big_endian64(static_cast<std::uint64_t>(v));
    std::memcpy(a.bytes.data(), &high, 8);
    std::memcpy(a.bytes.data() + 8, &low, 8);
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
void AddressPool<Ip>::reconcile(Bits lo, Bits hi, bool effective_may_close,
                                bool shadowed_may_open) {
    if (effective_may_close) {
        std::vector<Bits> inside;
        leases_.collect(lo, hi, inside);
        for (Bits a : inside)
            if (!trie_.is_free(a)) {
                leases_.erase(a);
                shadowed_.insert(a);
            }
    }
    if (shadowed_may_open)
        for (auto it = shadowed_.lower_bound(lo); it != shadowed_.end() && *it <= hi;) {
            if (trie_.is_free(*it)) {
                leases_.insert(*it);
                it = shadowed_.erase(it);
            } else {
                ++it;
            }
        }
}

template <class Ip>
void AddressPool<Ip>::reconcile(const Prefix& p, bool effective_may_close, bool shadowed_may_open) {
    constexpr unsigned W = FamilyTraits<Ip>::width;
    const Bits lo = to_bits(p.masked().addr);
    const Bits hi = lo | static_cast<Bits>(~detail::mask_of<Bits, W>(p.len));
    reconcile(lo, hi, effective_may_close, shadowed_may_open);
}

namespace {

// Where a pool prefix meets a range of addresses no host can have: the
// smaller of the two (prefixes are nested or disjoint), nothing when apart.
template <class P>
std::optional<P> unusable_part(const P& pool, const P& unusable) {
    if (pool.len >= unusable.len)
        return unusable.contains(pool.addr) ? std::optional<P>(pool.masked()) : std::nullopt;
    return pool.contains(unusable.addr) ? std::optional<P>(unusable) : std::nullopt;
}

template <class Ip>
auto unleasable_prefixes() {
    if constexpr (std::is_same_v<Ip, Ip4>)
        return unleasable_prefixes4();
    else
        return unleasable_prefixes6();
}

} // namespace

// A pool is the prefix minus its zero host, its IPv4 broadcast and every
// part of it that no host can have (a route as wide as 0.0.0.0/0 or ::/1
// covers loopback, multicast, ...): block marks, counted like any other, so
// that every draw is an address netd will grant.
template <class Ip>
void AddressPool<Ip>::add_prefix(const Prefix& p) {
    using Mark = typename FamilyTraits<Ip>::Trie::Mark;
    constexpr unsigned W = FamilyTraits<Ip>::width;
    const auto base = to_bits(p.masked().addr);
    const Bits bcast = base | static_cast<Bits>(~detail::mask_of<Bits, W>(p.len));
    trie_.add(Mark::Pool, base, p.len);
    trie_.add(Mark::Block, base, W);
    if constexpr (W == 32)
        if (p.len < 31)
            trie_.add(Mark::Block, bcast, W);
    for (const Prefix& never : unleasable_prefixes<Ip>())
        if (auto part = unusable_part(p, never))
            trie_.add(Mark::Block, to_bits(part->addr), part->len);
    prefixes_++;
    // A pool opens addresses (shadowed leases inside may come back); its
    // zero host, broadcast and unusable parts close some.
    reconcile(p, false, true);
    reconcile(base, base, true, false);
    if constexpr (W == 32)
        if (p.len < 31)
            reconcile(bcast, bcast, true, false);
    for (const Prefix& never : unleasable_prefixes<Ip>())
        if (auto part = unusable_part(p, never))
            reconcile(*part, true, false);
}

template <class Ip>
bool AddressPool<Ip>::remove_prefix(const Prefix& p) {
    using Mark = typename FamilyTraits<Ip>::Trie::Mark;
    constexpr unsigned W = FamilyTraits<Ip>::width;
    const auto base = to_bits(p.masked().addr);
    const Bits bcast = base | static_cast<Bits>(~detail::mask_of<Bits, W>(p.len));
    if (!trie_.remove(Mark::Pool, base, p.len))
        return false;
    trie_.remove(Mark::Block, base, W);
    if constexpr (W == 32)
        if (p.len < 31)
            trie_.remove(Mark::Block, bcast, W);
    for (const Prefix& never : unleasable_prefixes<Ip>())
        if (auto part = unusable_part(p, never))
            trie_.remove(Mark::Block, to_bits(part->addr), part->len);
    prefixes_--;
    // The leases inside may leave every pool (the caller revokes them).
    reconcile(p, true, false);
    reconcile(base, base, false, true);
    if constexpr (W == 32)
        if (p.len < 31)
            reconcile(bcast, bcast, false, true);
    for (const Prefix& never : unleasable_prefixes<Ip>())
        if (auto part = unusable_part(p, never))
            reconcile(*part, false, true);
    return true;
}

template <class Ip>
void AddressPool<Ip>::exclude(const Prefix& p) {
    trie_.add(FamilyTraits<Ip>::Trie::Mark::Block, to_bits(p.addr), p.len);
    reconcile(p, true, false);
}

template <class Ip>
bool AddressPool<Ip>::unexclude(const Prefix& p) {
    if (!trie_.remove(FamilyTraits<Ip>::Trie::Mark::Block, to_bits(p.addr), p.len))
        return false;
    reconcile(p, false, true);
    return true;
}

template <class Ip>
std::optional<Ip> AddressPool<Ip>::allocate(RandomSource& rng) {
    const Count total = free_count();
    if (total == 0)
        return std::nullopt;
    const Count r = detail::draw_below(rng, total);
    // K, the effective leases below the answer (see pool.hpp), found and
    // the answer inserted in one descent; nullopt is unreachable while the
    // counts are consistent.
    std::optional<Bits> bits;
    Bits first{};
    if (trie_.one_run(first)) {
        // Every effective lease is in the run: rank(lease) = lease - first.
        bits = leases_.insert_leading(
            [&](Bits lease, std::size_t index) {
                return static_cast<Count>(static_cast<Count>(static_cast<Bits>(lease - first)) -
                                          static_cast<Count>(index)) <= r;
            },
            [&](std::size_t k) -> std::optional<Bits> {
                return static_cast<Bits>(first + static_cast<Bits>(r + static_cast<Count>(k)));
            });
    } else {
        bits = leases_.insert_leading(
            [&](Bits lease, std::size_t index) {
                return static_cast<Count>(trie_.rank(lease) - static_cast<Count>(index)) <= r;
            },
            [&](std::size_t k) {
                return trie_.select(static_cast<Count>(r + static_cast<Count>(k)));
            });
    }
    if (!bits)
        return std::nullopt;
    return from_bits(*bits, static_cast<const Ip*>(nullptr));
}

template <class Ip>
bool AddressPool<Ip>::is_free(const Ip& a) const {
    const Bits bits = to_bits(a);
    return trie_.is_free(bits) && !leases_.contains(bits);
}

template <class Ip>
typename AddressPool<Ip>::Count AddressPool<Ip>::open_in(const Prefix& p) const {
    constexpr unsigned W = FamilyTraits<Ip>::width;
    const Bits base = to_bits(p.masked().addr);
    const Bits last = base | static_cast<Bits>(~detail::mask_of<Bits, W>(p.len));
    return static_cast<Count>(trie_.rank(last) - trie_.rank(base) + (trie_.is_free(last) ? 1 : 0));
}

template <class Ip>
bool AddressPool<Ip>::take(const Ip& a) {
    const Bits bits = to_bits(a);
    if (!trie_.is_free(bits))
        return false;
    return leases_.insert(bits);
}

template <class Ip>
void AddressPool<Ip>::release(const Ip& a) {
    const Bits bits = to_bits(a);
    if (!leases_.erase(bits))
        shadowed_.erase(bits);
}

template <class Ip>
std::size_t AddressPool<Ip>::memory_bytes() const {
    // std::set nodes: three pointers, a colour and the key, rounded up.
    constexpr std::size_t set_node = 32 + sizeof(Bits) + 8;
    return trie_.memory_bytes() + leases_.memory_bytes() + shadowed_.size() * set_node;
}

template class AddressPool<Ip4>;
template class AddressPool<Ip6>;

} // namespace wgd::leased
