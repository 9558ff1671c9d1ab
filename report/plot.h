// Line plots as PNG files, with no plotting library: axes, numeric tick labels, grid lines, a legend in a
// built-in 5x7 bitmap font, and Bresenham lines on a white background. For training-loss curves and
// per-sigma variance plots.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace stf::report {

using Rgb = std::array<uint8_t, 3>;

// The i-th colour of a 10-colour palette (matplotlib's "tab10"), cycling.
Rgb palette_color(size_t i);

struct Series {
    std::string name;  // shown in the legend; series with empty names are left out of it
    std::vector<double> x, y;
    Rgb color = {31, 119, 180};
};

struct PlotOptions {
    std::string title, x_label, y_label;
    bool log_y = false;  // log10 y axis; values <= 0 are skipped like NaN
    int width = 640, height = 400;
    int line_width = 1;
    // Fixed y range (in data units; both must be set); NaN: fit the data.
    double y_min = NAN, y_max = NAN;
};

// Points whose x or y is NaN or infinite are skipped and break the line; a point with no neighbour is
// drawn as a dot. Empty series (or none at all) give empty axes. Throws stf::Error for sizes below
// 160x100 or mismatched x/y lengths.
void write_line_plot_png(const std::string& path, const std::vector<Series>& series, const PlotOptions& o = {});

// Renders the same image into RGB bytes (height * width * 3), for tests and for callers that compose images.
std::vector<uint8_t> render_line_plot(const std::vector<Series>& series, const PlotOptions& o);

// Draws text in the 5x7 font (6 pixels per character at scale 1); characters it lacks show as a box.
// Exposed for tests and small annotations.
void draw_text(std::vector<uint8_t>& rgb, int width, int height, int x, int y, const std::string& text, Rgb color,
               int scale = 1);
int text_width(const std::string& text, int scale = 1);

}  // namespace stf::report
