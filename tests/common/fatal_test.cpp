// The one fatal path: logged, the stop hook run once, _exit(1) with no
// destructor or atexit handler run. Each case runs in a forked child.
#include "common/fatal.hpp"
#include "common/log.hpp"
#include "tests/privsep/child.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

using namespace wgd;
using namespace wgd::privsep::testing;

namespace {

// A pipe the child writes marks into; read whole by the parent.
struct Marks {
    int fds[2];
    Marks() { EXPECT_EQ(::pipe(fds), 0); }
    ~Marks() {
        ::close(fds[0]);
        if (fds[1] >= 0)
            ::close(fds[1]);
    }
    void put(const std::string& s) const { (void)!::write(fds[1], s.data(), s.size()); }
    std::string take() {
        ::close(fds[1]);
        fds[1] = -1;
        std::string out;
        char buf[256];
        ssize_t n;
        while ((n = ::read(fds[0], buf, sizeof buf)) > 0)
            out.append(buf, static_cast<std::size_t>(n));
        return out;
    }
};

Marks* g_marks = nullptr;

struct MarksOnDestruction {
    ~MarksOnDestruction() { g_marks->put("[destructor]"); }
};

} // namespace

TEST(Fatal, LogsTheReasonRunsTheStopHookAndExitsOneWithoutDestructorsOrAtexit) {
    Marks marks;
    g_marks = &marks;
    int status = wait_status_of([&] {
        log_set_sink([&](LogLevel level, std::string_view line) {
            marks.put(level == LogLevel::error ? "[error " : "[other ");
            marks.put(std::string(line) + "]");
        });
        std::atexit([] { g_marks->put("[atexit]"); });
        MarksOnDestruction local;
        FatalStopHook hook([&] { marks.put("[hook]"); });
        fatal("leased sent %d malformed orders", 3);
        return 0;
    });
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << describe_status(status);
    EXPECT_EQ(marks.take(), "[error leased sent 3 malformed orders][hook]");
}

TEST(Fatal, AHookThatFailsFatallyItselfRunsOnce) {
    Marks marks;
    int status = wait_status_of([&] {
        log_set_sink(
            [&](LogLevel, std::string_view line) { marks.put("[" + std::string(line) + "]"); });
        FatalStopHook hook([&] {
            marks.put("[hook]");
            fatal("the hook failed too");
        });
        exit_fatally();
        return 0;
    });
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << describe_status(status);
    EXPECT_EQ(marks.take(), "[hook][the hook failed too]");
}

TEST(Fatal, NoHookOutsideItsScope) {
    Marks marks;
    int status = wait_status_of([&] {
        log_set_sink([](LogLevel, std::string_view) {});
        {
            FatalStopHook hook([&] { marks.put("[hook]"); });
        }
        fatal("after the scope");
        return 0;
    });
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << describe_status(status);
    EXPECT_EQ(marks.take(), "");
}
