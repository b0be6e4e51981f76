#include "leased/leased.hpp"

#include <cstdio>

namespace wgd::leased {

int show_main(const ShowCommand&) {
    std::fprintf(stderr, "wg-dynamic-server: show is not available yet\n");
    return 1;
}

} // namespace wgd::leased
