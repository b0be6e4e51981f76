// For tests that play a neighbour process: waits for the next message on a
// channel. The suite's processes never wait on one channel alone (their
// loops poll them all), so this lives with the tests.
#pragma once

#include "privsep/channel.hpp"

#include <poll.h>

#include <cerrno>
#include <variant>

namespace wgd::privsep::testing {

// The next message within timeout_ms (-1: no limit); would_block when none
// came. What waits in the channel's own queue is written meanwhile.
inline std::variant<Message, RecvError> recv_within(Channel& channel, int timeout_ms) {
    for (;;) {
        auto r = channel.recv();
        auto* e = std::get_if<RecvError>(&r);
        if (e == nullptr || *e != RecvError::would_block)
            return r;
        if (!channel.flush())
            return RecvError::io_error;
        pollfd p{channel.fd(), short(POLLIN | (channel.wants_write() ? POLLOUT : 0)), 0};
        const int ready = ::poll(&p, 1, timeout_ms);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0)
            return RecvError::io_error;
        if (ready == 0)
            return RecvError::would_block;
    }
}

} // namespace wgd::privsep::testing
