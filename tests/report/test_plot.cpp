// Line plots as PNG: size, colours, odd data, the bitmap font.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "report/plot.h"
#include "tests/expect_error.h"
#include "tests/png_files.h"
#include "tests/temp_files.h"

using namespace stf;
using namespace stf::report;
using test::error_of;
using test::has;
namespace fs = std::filesystem;

namespace {

struct TempDir : test::TempDir {
    TempDir() : test::TempDir("stf_report_test") {}
};
using test::read_bytes;
using test::write_bytes;
using test::read_png;

}  // namespace

// ---- plot ------------------------------------------------------------------------------------------

TEST_CASE("line plots: requested size, lines drawn in their colours, robust to odd data") {
    TempDir tmp;
    Series rising{"loss", {}, {}, {255, 0, 0}};
    Series flat{"ema", {}, {}, {0, 0, 255}};
    for (int i = 0; i <= 100; ++i) {
        rising.x.push_back(i);
        rising.y.push_back(0.5 + i * 0.01);
        flat.x.push_back(i);
        flat.y.push_back(i == 50 ? NAN : 1.0);
    }
    PlotOptions o;
    o.title = "Training loss";
    o.x_label = "step (kimg)";
    o.y_label = "loss";
    o.width = 320;
    o.height = 240;
    write_line_plot_png(tmp.file("plot.png"), {rising, flat}, o);
    int w, h, c;
    std::vector<uint8_t> px = read_png(tmp.file("plot.png"), w, h, c);
    REQUIRE(w == 320);
    REQUIRE(h == 240);
    REQUIRE(c == 3);
    CHECK(px == render_line_plot({rising, flat}, o));
    auto count = [&](Rgb col, int x0, int x1) {
        int k = 0;
        for (int y = 0; y < h; ++y)
            for (int x = x0; x < x1; ++x) {
                const uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 3];
                k += p[0] == col[0] && p[1] == col[1] && p[2] == col[2];
            }
        return k;
    };
    // The red line runs across the plot, bottom left to top right.
    CHECK(count({255, 0, 0}, 0, w / 3) > 20);
    CHECK(count({255, 0, 0}, 2 * w / 3, w) > 20);
    int first_red_row_left = -1, first_red_row_right = -1;
    for (int y = 0; y < h && (first_red_row_left < 0 || first_red_row_right < 0); ++y)
        for (int x = 0; x < w; ++x) {
            const uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 3];
            if (p[0] == 255 && p[1] == 0 && p[2] == 0) {
                if (x > 2 * w / 3 && first_red_row_right < 0) first_red_row_right = y;
                if (x < w / 3 && x > 60 && first_red_row_left < 0) first_red_row_left = y;
            }
        }
    CHECK(first_red_row_right < first_red_row_left);
    CHECK(count({0, 0, 255}, 0, w) > 100);  // the flat line, broken at the NaN
    int black = count({0, 0, 0}, 0, w);
    CHECK(black > 200);  // labels and title text

    // Nothing to draw, NaNs only, a single point, log axis with non-positive values: no crash.
    render_line_plot({}, o);
    render_line_plot({Series{"empty", {}, {}}}, o);
    render_line_plot({Series{"nan", {1, 2}, {NAN, NAN}}}, o);
    std::vector<uint8_t> one = render_line_plot({Series{"", {3}, {4}, {0, 200, 0}}}, o);
    int green = 0;
    for (size_t i = 0; i < one.size(); i += 3) green += one[i] == 0 && one[i + 1] == 200 && one[i + 2] == 0;
    CHECK(green >= 9);  // a 3x3 dot
    PlotOptions lo = o;
    lo.log_y = true;
    render_line_plot({Series{"var", {0, 1, 2, 3, 4}, {1e-4, 0, -1, 1e2, INFINITY}}}, lo);
    render_line_plot({Series{"var", {0, 1, 2}, {0.03, 0.05, 0.08}}}, lo);  // less than a decade
    lo.y_min = 1e-3;
    lo.y_max = 10;
    render_line_plot({Series{"var", {0, 1}, {1e-5, 1e5}}}, lo);
    CHECK(has(error_of([&] { render_line_plot({Series{"bad", {1, 2}, {1}}}, o); }), "bad"));
    PlotOptions tiny = o;
    tiny.width = 10;
    CHECK(has(error_of([&] { render_line_plot({}, tiny); }), "size"));
}

TEST_CASE("the bitmap font draws known glyphs and a box for unknown ones") {
    const int w = 40, h = 10;
    std::vector<uint8_t> px(w * h * 3, 255);
    draw_text(px, w, h, 1, 1, "1", {0, 0, 0});
    // '1': row 0 is "..#..", row 6 is ".###."
    auto dark = [&](int x, int y) { return px[(y * w + x) * 3] == 0; };
    CHECK(dark(1 + 2, 1));
    CHECK_FALSE(dark(1 + 0, 1));
    CHECK(dark(1 + 1, 7));
    CHECK(dark(1 + 3, 7));
    std::vector<uint8_t> q(w * h * 3, 255);
    draw_text(q, w, h, 0, 0, "\x01", {0, 0, 0});
    int k = 0;
    for (size_t i = 0; i < q.size(); i += 3) k += q[i] == 0;
    CHECK(k == 5 + 5 + 2 * 5);  // the outline of a 5x7 box
    CHECK(text_width("abc") == 17);
    CHECK(text_width("abc", 2) == 34);
}
