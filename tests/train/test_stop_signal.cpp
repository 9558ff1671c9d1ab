// The graceful stop (train/stop_signal.h): the first SIGTERM/SIGINT is recorded, not fatal; a second
// ends the process at once with status 128 + signal. Run in a forked child so the test process keeps
// its own handlers.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include "train/stop_signal.h"

using stf::train::StopSignal;

TEST_CASE("first signal sets the flag, the second stops the process, the handlers are restored after") {
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        int code = 0;
        {
            StopSignal stop;
            if (StopSignal::received() != 0) code = 1;
            std::raise(SIGTERM);
            if (StopSignal::received() != SIGTERM) code = 2;
            if (code != 0) _exit(code);
            std::raise(SIGINT);  // second: _exit(128 + SIGINT)
        }
        _exit(3);
    }
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 128 + SIGINT);

    child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        { StopSignal stop; }
        std::raise(SIGTERM);  // default action again: killed by the signal
        _exit(4);
    }
    REQUIRE(waitpid(child, &status, 0) == child);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGTERM);
}
