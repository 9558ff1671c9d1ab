// The progress bar: what it draws, and that it stays quiet off a terminal.
#include <doctest/doctest.h>

#include <filesystem>

#include "report/progress.h"
#include "tests/expect_error.h"

using namespace stf;
using namespace stf::report;
using test::error_of;
using test::has;
namespace fs = std::filesystem;

// ---- progress --------------------------------------------------------------------------------------

TEST_CASE("ProgressBar renders a bar and stays quiet off a terminal") {
    ProgressBar bar(10, "sampling");
    std::string line = bar.render(5, "loss 0.1", 2.0);
    CHECK(has(line, "sampling ["));
    CHECK(has(line, " 50% 5/10"));
    CHECK(has(line, "2.5/s"));
    CHECK(has(line, "loss 0.1"));
    ProgressBar unknown(0, "");
    CHECK(has(unknown.render(7, "", 1.0), "7 7/s"));
    for (int i = 0; i <= 10; ++i) bar.update(i);
    bar.finish();
    bar.finish();
    CHECK(bar.enabled() == (::isatty(STDERR_FILENO) == 1));
}
