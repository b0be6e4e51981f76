// A vector of trivially copyable values that keeps up to N of them inside
// itself and goes to the heap only beyond: a peer's allowed IPs are nearly
// always fe80::X/128 plus a leased /32 and /128, and two std::vectors per
// peer (48 bytes plus two heap blocks) would be most of netd's memory at
// 100,000 peers. Its alignment is T's (1 for prefixes), so a Peer packs
// without padding.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

namespace wgd::netd {

template <class T, std::size_t N>
class InlineVector {
    static_assert(std::is_trivially_copyable_v<T>, "kept and moved with memcpy");
    static_assert(N >= 1 && N < 255);

  public:
    using value_type = T;
    using size_type = std::size_t;
    using iterator = T*;
    using const_iterator = const T*;

    InlineVector() = default;
    InlineVector(std::initializer_list<T> values) : InlineVector(values.begin(), values.end()) {}
    template <class It>
    InlineVector(It first, It last) {
        for (; first != last; ++first)
            push_back(*first);
    }
    InlineVector(const InlineVector& other) : InlineVector(other.begin(), other.end()) {}
    InlineVector(InlineVector&& other) noexcept { take(other); }
    InlineVector& operator=(const InlineVector& other) {
        if (this != &other) {
            InlineVector copy(other);
            release();
            take(copy);
        }
        return *this;
    }
    InlineVector& operator=(InlineVector&& other) noexcept {
        if (this != &other) {
            release();
            take(other);
        }
        return *this;
    }
    ~InlineVector() { release(); }

    std::size_t size() const { return on_heap() ? heap().size : tag_; }
    bool empty() const { return size() == 0; }
    std::size_t capacity() const { return on_heap() ? heap().capacity : N; }
    bool on_heap() const { return tag_ == kOnHeap; }

    T* data() { return on_heap() ? heap().data : inline_data(); }
    const T* data() const { return on_heap() ? heap().data : inline_data(); }
    T* begin() { return data(); }
    T* end() { return data() + size(); }
    const T* begin() const { return data(); }
    const T* end() const { return data() + size(); }
    T& operator[](std::size_t i) { return data()[i]; }
    const T& operator[](std::size_t i) const { return data()[i]; }
    const T& front() const { return data()[0]; }
    const T& back() const { return data()[size() - 1]; }

    void push_back(const T& value) {
        const std::size_t n = size();
        if (n == capacity()) {
            const T saved = value; // value may live in this vector
            grow(n == N ? 2 * N : 2 * n);
            data()[n] = saved;
        } else {
            data()[n] = value;
        }
        set_size(n + 1);
    }

    // Removes [first, last) and keeps the order; back inside when the rest fits.
    T* erase(const T* first, const T* last) {
        T* base = data();
        const std::size_t from = static_cast<std::size_t>(first - base);
        const std::size_t count = static_cast<std::size_t>(last - first);
        const std::size_t n = size();
        std::memmove(static_cast<void*>(base + from), base + from + count,
                     (n - from - count) * sizeof(T));
        set_size(n - count);
        if (on_heap() && n - count <= N)
            come_back_inside();
        return data() + from;
    }
    void clear() {
        release();
        tag_ = 0;
    }

    std::vector<T> to_vector() const { return std::vector<T>(begin(), end()); }
    // Implicit so that code outside netd that copies a Peer's lists into
    // messages and reports (std::vector there) needs no change.
    operator std::vector<T>() const { return to_vector(); }

    friend bool operator==(const InlineVector& a, const InlineVector& b) {
        return std::equal(a.begin(), a.end(), b.begin(), b.end());
    }

  private:
    static constexpr std::uint8_t kOnHeap = 0xff;
    struct Heap {
        T* data;
        std::uint32_t size;
        std::uint32_t capacity;
    };
    static constexpr std::size_t kBytes = std::max(N * sizeof(T), sizeof(Heap));

    // Heap is kept by memcpy so that bytes_ needs no pointer alignment.
    Heap heap() const {
        Heap h;
        std::memcpy(&h, bytes_, sizeof h);
        return h;
    }
    void set_heap(const Heap& h) { std::memcpy(bytes_, &h, sizeof h); }
    T* inline_data() { return std::launder(reinterpret_cast<T*>(bytes_)); }
    const T* inline_data() const { return std::launder(reinterpret_cast<const T*>(bytes_)); }
    void set_size(std::size_t n) {
        if (on_heap()) {
            Heap h = heap();
            h.size = static_cast<std::uint32_t>(n);
            set_heap(h);
        } else {
            tag_ = static_cast<std::uint8_t>(n);
        }
    }

    void grow(std::size_t capacity) {
        const std::size_t n = size();
        T* fresh = std::allocator<T>().allocate(capacity);
        std::memcpy(static_cast<void*>(fresh), data(), n * sizeof(T));
        release();
        set_heap({fresh, static_cast<std::uint32_t>(n), static_cast<std::uint32_t>(capacity)});
        tag_ = kOnHeap;
    }
    void come_back_inside() {
        const Heap h = heap();
        std::memcpy(bytes_, h.data, h.size * sizeof(T));
        std::allocator<T>().deallocate(h.data, h.capacity);
        tag_ = static_cast<std::uint8_t>(h.size);
    }
    void release() {
        if (on_heap()) {
            const Heap h = heap();
            std::allocator<T>().deallocate(h.data, h.capacity);
            tag_ = 0;
        }
    }
    // Leaves other empty and inside.
    void take(InlineVector& other) {
        std::memcpy(bytes_, other.bytes_, kBytes);
        tag_ = other.tag_;
        other.tag_ = 0;
    }

    alignas(T) unsigned char bytes_[kBytes] = {};
    std::uint8_t tag_ = 0; // the size while inside, kOnHeap once on the heap
};

} // namespace wgd::netd
