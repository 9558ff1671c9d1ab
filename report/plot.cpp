#include "report/plot.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>

#include "data/image_io.h"
#include "tensor/tensor.h"

namespace stf::report {

namespace {

// ---- 5x7 bitmap font: 7 rows of 5 columns, '#' set ------------------------------------------------
struct Glyph {
    char c;
    const char* rows;  // 35 characters, row by row
};

// clang-format off
const Glyph kGlyphs[] = {
    {' ', "....." "....." "....." "....." "....." "....." "....."},
    {'0', ".###." "#...#" "#..##" "#.#.#" "##..#" "#...#" ".###."},
    {'1', "..#.." ".##.." "..#.." "..#.." "..#.." "..#.." ".###."},
    {'2', ".###." "#...#" "....#" "...#." "..#.." ".#..." "#####"},
    {'3', "#####" "...#." "..#.." "...#." "....#" "#...#" ".###."},
    {'4', "...#." "..##." ".#.#." "#..#." "#####" "...#." "...#."},
    {'5', "#####" "#...." "####." "....#" "....#" "#...#" ".###."},
    {'6', "..##." ".#..." "#...." "####." "#...#" "#...#" ".###."},
    {'7', "#####" "....#" "...#." "..#.." ".#..." ".#..." ".#..."},
    {'8', ".###." "#...#" "#...#" ".###." "#...#" "#...#" ".###."},
    {'9', ".###." "#...#" "#...#" ".####" "....#" "...#." ".##.."},
    {'A', ".###." "#...#" "#...#" "#####" "#...#" "#...#" "#...#"},
    {'B', "####." "#...#" "#...#" "####." "#...#" "#...#" "####."},
    {'C', ".###." "#...#" "#...." "#...." "#...." "#...#" ".###."},
    {'D', "###.." "#..#." "#...#" "#...#" "#...#" "#..#." "###.."},
    {'E', "#####" "#...." "#...." "####." "#...." "#...." "#####"},
    {'F', "#####" "#...." "#...." "####." "#...." "#...." "#...."},
    {'G', ".###." "#...#" "#...." "#.###" "#...#" "#...#" ".####"},
    {'H', "#...#" "#...#" "#...#" "#####" "#...#" "#...#" "#...#"},
    {'I', ".###." "..#.." "..#.." "..#.." "..#.." "..#.." ".###."},
    {'J', "..###" "...#." "...#." "...#." "...#." "#..#." ".##.."},
    {'K', "#...#" "#..#." "#.#.." "##..." "#.#.." "#..#." "#...#"},
    {'L', "#...." "#...." "#...." "#...." "#...." "#...." "#####"},
    {'M', "#...#" "##.##" "#.#.#" "#.#.#" "#...#" "#...#" "#...#"},
    {'N', "#...#" "#...#" "##..#" "#.#.#" "#..##" "#...#" "#...#"},
    {'O', ".###." "#...#" "#...#" "#...#" "#...#" "#...#" ".###."},
    {'P', "####." "#...#" "#...#" "####." "#...." "#...." "#...."},
    {'Q', ".###." "#...#" "#...#" "#...#" "#.#.#" "#..#." ".##.#"},
    {'R', "####." "#...#" "#...#" "####." "#.#.." "#..#." "#...#"},
    {'S', ".####" "#...." "#...." ".###." "....#" "....#" "####."},
    {'T', "#####" "..#.." "..#.." "..#.." "..#.." "..#.." "..#.."},
    {'U', "#...#" "#...#" "#...#" "#...#" "#...#" "#...#" ".###."},
    {'V', "#...#" "#...#" "#...#" "#...#" "#...#" ".#.#." "..#.."},
    {'W', "#...#" "#...#" "#...#" "#.#.#" "#.#.#" "#.#.#" ".#.#."},
    {'X', "#...#" "#...#" ".#.#." "..#.." ".#.#." "#...#" "#...#"},
    {'Y', "#...#" "#...#" ".#.#." "..#.." "..#.." "..#.." "..#.."},
    {'Z', "#####" "....#" "...#." "..#.." ".#..." "#...." "#####"},
    {'a', "....." "....." ".###." "....#" ".####" "#...#" ".####"},
    {'b', "#...." "#...." "#.##." "##..#" "#...#" "#...#" "####."},
    {'c', "....." "....." ".###." "#...." "#...." "#...#" ".###."},
    {'d', "....#" "....#" ".##.#" "#..##" "#...#" "#...#" ".####"},
    {'e', "....." "....." ".###." "#...#" "#####" "#...." ".###."},
    {'f', "..##." ".#..#" ".#..." "###.." ".#..." ".#..." ".#..."},
    {'g', "....." "....." ".####" "#...#" ".####" "....#" ".###."},
    {'h', "#...." "#...." "#.##." "##..#" "#...#" "#...#" "#...#"},
    {'i', "..#.." "....." ".##.." "..#.." "..#.." "..#.." ".###."},
    {'j', "...#." "....." "..##." "...#." "...#." "#..#." ".##.."},
    {'k', "#...." "#...." "#..#." "#.#.." "##..." "#.#.." "#..#."},
    {'l', ".##.." "..#.." "..#.." "..#.." "..#.." "..#.." ".###."},
    {'m', "....." "....." "##.#." "#.#.#" "#.#.#" "#...#" "#...#"},
    {'n', "....." "....." "#.##." "##..#" "#...#" "#...#" "#...#"},
    {'o', "....." "....." ".###." "#...#" "#...#" "#...#" ".###."},
    {'p', "....." "####." "#...#" "#...#" "####." "#...." "#...."},
    {'q', "....." ".####" "#...#" "#...#" ".####" "....#" "....#"},
    {'r', "....." "....." "#.##." "##..#" "#...." "#...." "#...."},
    {'s', "....." "....." ".####" "#...." ".###." "....#" "####."},
    {'t', ".#..." ".#..." "###.." ".#..." ".#..." ".#..#" "..##."},
    {'u', "....." "....." "#...#" "#...#" "#...#" "#..##" ".##.#"},
    {'v', "....." "....." "#...#" "#...#" "#...#" ".#.#." "..#.."},
    {'w', "....." "....." "#...#" "#...#" "#.#.#" "#.#.#" ".#.#."},
    {'x', "....." "....." "#...#" ".#.#." "..#.." ".#.#." "#...#"},
    {'y', "....." "#...#" "#...#" "#...#" ".####" "....#" ".###."},
    {'z', "....." "....." "#####" "...#." "..#.." ".#..." "#####"},
    {'.', "....." "....." "....." "....." "....." ".##.." ".##.."},
    {',', "....." "....." "....." "....." ".##.." "..#.." ".#..."},
    {'-', "....." "....." "....." ".###." "....." "....." "....."},
    {'+', "....." "..#.." "..#.." "#####" "..#.." "..#.." "....."},
    {':', "....." ".##.." ".##.." "....." ".##.." ".##.." "....."},
    {'(', "...#." "..#.." ".#..." ".#..." ".#..." "..#.." "...#."},
    {')', ".#..." "..#.." "...#." "...#." "...#." "..#.." ".#..."},
    {'[', ".###." ".#..." ".#..." ".#..." ".#..." ".#..." ".###."},
    {']', ".###." "...#." "...#." "...#." "...#." "...#." ".###."},
    {'/', "....." "....#" "...#." "..#.." ".#..." "#...." "....."},
    {'_', "....." "....." "....." "....." "....." "....." "#####"},
    {'=', "....." "....." "#####" "....." "#####" "....." "....."},
    {'%', "##..." "##..#" "...#." "..#.." ".#..." "#..##" "...##"},
    {'\'', "..#.." "..#.." ".#..." "....." "....." "....." "....."},
    {'*', "....." "..#.." "#.#.#" ".###." "#.#.#" "..#.." "....."},
    {'<', "...#." "..#.." ".#..." "#...." ".#..." "..#.." "...#."},
    {'>', ".#..." "..#.." "...#." "....#" "...#." "..#.." ".#..."},
    {'!', "..#.." "..#.." "..#.." "..#.." "..#.." "....." "..#.."},
    {'?', ".###." "#...#" "....#" "...#." "..#.." "....." "..#.."},
    {'#', ".#.#." ".#.#." "#####" ".#.#." "#####" ".#.#." ".#.#."},
    {'|', "..#.." "..#.." "..#.." "..#.." "..#.." "..#.." "..#.."},
    {'^', "..#.." ".#.#." "#...#" "....." "....." "....." "....."},
};
// clang-format on

const char kUnknownGlyph[] = "#####" "#...#" "#...#" "#...#" "#...#" "#...#" "#####";

const char* glyph_rows(char c) {
    static const char* table[128] = {};
    static bool built = [] {
        for (const Glyph& g : kGlyphs) table[static_cast<unsigned char>(g.c)] = g.rows;
        return true;
    }();
    (void)built;
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 128 && table[u]) return table[u];
    return kUnknownGlyph;
}

constexpr int kCharW = 6;  // 5 columns and a space
constexpr int kCharH = 7;

// ---- canvas ----------------------------------------------------------------------------------------
struct Canvas {
    int w, h;
    std::vector<uint8_t>& px;
    // Data drawing is clipped to this rectangle (inclusive).
    int cx0 = 0, cy0 = 0, cx1 = -1, cy1 = -1;
    bool clip = false;

    void set(int x, int y, Rgb c) {
        if (x < 0 || y < 0 || x >= w || y >= h) return;
        if (clip && (x < cx0 || x > cx1 || y < cy0 || y > cy1)) return;
        uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 3];
        p[0] = c[0];
        p[1] = c[1];
        p[2] = c[2];
    }
    void fill(int x0, int y0, int x1, int y1, Rgb c) {
        for (int y = y0; y <= y1; ++y)
            for (int x = x0; x <= x1; ++x) set(x, y, c);
    }
    void hline(int x0, int x1, int y, Rgb c) { fill(std::min(x0, x1), y, std::max(x0, x1), y, c); }
    void vline(int x, int y0, int y1, Rgb c) { fill(x, std::min(y0, y1), x, std::max(y0, y1), c); }
    void rect(int x0, int y0, int x1, int y1, Rgb c) {
        hline(x0, x1, y0, c);
        hline(x0, x1, y1, c);
        vline(x0, y0, y1, c);
        vline(x1, y0, y1, c);
    }
    // Bresenham, `lw` pixels thick (a square brush).
    void line(int x0, int y0, int x1, int y1, Rgb c, int lw) {
        int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
        int dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
        int err = dx + dy;
        int lo = -(lw - 1) / 2;
        for (;;) {
            for (int oy = 0; oy < lw; ++oy)
                for (int ox = 0; ox < lw; ++ox) set(x0 + lo + ox, y0 + lo + oy, c);
            if (x0 == x1 && y0 == y1) break;
            int e2 = 2 * err;
            if (e2 >= dy) {
                err += dy;
                x0 += sx;
            }
            if (e2 <= dx) {
                err += dx;
                y0 += sy;
            }
        }
    }
    void text(int x, int y, const std::string& s, Rgb c, int scale = 1) {
        for (size_t k = 0; k < s.size(); ++k) {
            const char* rows = glyph_rows(s[k]);
            for (int gy = 0; gy < kCharH; ++gy)
                for (int gx = 0; gx < 5; ++gx)
                    if (rows[gy * 5 + gx] == '#')
                        fill(x + (static_cast<int>(k) * kCharW + gx) * scale, y + gy * scale,
                             x + (static_cast<int>(k) * kCharW + gx) * scale + scale - 1, y + gy * scale + scale - 1, c);
        }
    }
    // Rotated a quarter turn counter-clockwise, reading bottom to top; (x, y) is the bottom-left corner.
    void text_up(int x, int y, const std::string& s, Rgb c) {
        for (size_t k = 0; k < s.size(); ++k) {
            const char* rows = glyph_rows(s[k]);
            for (int gy = 0; gy < kCharH; ++gy)
                for (int gx = 0; gx < 5; ++gx)
                    if (rows[gy * 5 + gx] == '#') set(x + gy, y - (static_cast<int>(k) * kCharW + gx), c);
        }
    }
};

// ---- ticks -----------------------------------------------------------------------------------------
struct Tick {
    double pos;  // in axis units (log10 for a log axis)
    std::string label;
};

std::string compact_exponent(std::string s) {
    // "1.5e+06" -> "1.5e6", "2e-05" -> "2e-5"
    size_t e = s.find('e');
    if (e == std::string::npos) return s;
    std::string mant = s.substr(0, e), exp = s.substr(e + 1);
    bool neg = !exp.empty() && exp[0] == '-';
    if (!exp.empty() && (exp[0] == '-' || exp[0] == '+')) exp = exp.substr(1);
    size_t nz = exp.find_first_not_of('0');
    exp = nz == std::string::npos ? "0" : exp.substr(nz);
    return mant + "e" + (neg ? "-" : "") + exp;
}

std::string format_tick(double v, double step, double max_abs) {
    char buf[64];
    if (std::fabs(v) < step * 1e-9) v = 0;
    int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
    if (max_abs < 1e6 && decimals <= 4) {
        std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
        return buf;
    }
    if (v == 0) return "0";
    int digits = std::clamp(static_cast<int>(std::floor(std::log10(max_abs)) - std::floor(std::log10(step) + 1e-9)), 0, 3);
    std::snprintf(buf, sizeof buf, "%.*e", digits, v);
    return compact_exponent(buf);
}

double nice_step(double range, int target) {
    double raw = range / std::max(1, target);
    double mag = std::pow(10.0, std::floor(std::log10(raw)));
    double r = raw / mag;
    double nice = r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10;
    return nice * mag;
}

// Ticks at multiples of a 1-2-5 step inside [lo, hi]; with to_log, placed at log10 of the value.
std::vector<Tick> linear_ticks(double lo, double hi, int target, bool to_log) {
    std::vector<Tick> ticks;
    if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return ticks;
    double step = nice_step(hi - lo, target);
    double first = std::ceil(lo / step - 1e-9);
    double max_abs = std::max(std::fabs(lo), std::fabs(hi));
    for (int k = 0; k < 100; ++k) {
        double v = (first + k) * step;
        if (v > hi + step * 1e-9) break;
        if (to_log && v <= 0) continue;
        ticks.push_back({to_log ? std::log10(v) : v, format_tick(v, step, max_abs)});
    }
    return ticks;
}

std::string decade_label(int e) {
    if (e >= 0 && e <= 3) {
        static const char* plain[] = {"1", "10", "100", "1000"};
        return plain[e];
    }
    return "1e" + std::to_string(e);
}

// Ticks for a log10 axis spanning [lo, hi] (in log10 units). `minor` gets unlabelled 2..9 positions.
std::vector<Tick> log_ticks(double lo, double hi, std::vector<double>& minor) {
    int e0 = static_cast<int>(std::ceil(lo - 1e-9)), e1 = static_cast<int>(std::floor(hi + 1e-9));
    if (e1 - e0 + 1 < 2) return linear_ticks(std::pow(10.0, lo), std::pow(10.0, hi), 5, true);
    int every = std::max(1, (e1 - e0 + 7) / 8);
    std::vector<Tick> ticks;
    for (int e = e0; e <= e1; ++e)
        if ((e - e0) % every == 0) ticks.push_back({static_cast<double>(e), decade_label(e)});
    if (every == 1)
        for (int e = e0 - 1; e <= e1; ++e)
            for (int m = 2; m <= 9; ++m) {
                double p = e + std::log10(static_cast<double>(m));
                if (p >= lo && p <= hi) minor.push_back(p);
            }
    return ticks;
}

}  // namespace

Rgb palette_color(size_t i) {
    static const Rgb kTab10[10] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},   {148, 103, 189},
                                   {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
    return kTab10[i % 10];
}

int text_width(const std::string& text, int scale) {
    return text.empty() ? 0 : (static_cast<int>(text.size()) * kCharW - 1) * scale;
}

void draw_text(std::vector<uint8_t>& rgb, int width, int height, int x, int y, const std::string& text, Rgb color,
               int scale) {
    STF_CHECK(static_cast<int64_t>(rgb.size()) == int64_t(width) * height * 3,
              "draw_text: buffer of " << rgb.size() << " bytes for " << width << "x" << height << " RGB");
    Canvas c{width, height, rgb};
    c.text(x, y, text, color, std::max(1, scale));
}

std::vector<uint8_t> render_line_plot(const std::vector<Series>& series, const PlotOptions& o) {
    STF_CHECK(o.width >= 160 && o.height >= 100 && o.width <= 16384 && o.height <= 16384,
              "write_line_plot_png: size " << o.width << "x" << o.height << " (needs 160x100 to 16384x16384)");
    for (const Series& s : series)
        STF_CHECK(s.x.size() == s.y.size(), "write_line_plot_png: series '" << s.name << "' has " << s.x.size()
                                                                            << " x values and " << s.y.size() << " y");
    const int W = o.width, H = o.height, lw = std::clamp(o.line_width, 1, 8);
    const Rgb black{0, 0, 0}, grid_c{225, 225, 225}, frame_c{60, 60, 60}, white{255, 255, 255};

    auto valid = [&](double x, double y) { return std::isfinite(x) && std::isfinite(y) && (!o.log_y || y > 0); };
    auto ty = [&](double y) { return o.log_y ? std::log10(y) : y; };

    // Data ranges in axis units.
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (const Series& s : series)
        for (size_t i = 0; i < s.x.size(); ++i)
            if (valid(s.x[i], s.y[i])) {
                xmin = std::min(xmin, s.x[i]);
                xmax = std::max(xmax, s.x[i]);
                ymin = std::min(ymin, ty(s.y[i]));
                ymax = std::max(ymax, ty(s.y[i]));
            }
    bool fixed_y = std::isfinite(o.y_min) && std::isfinite(o.y_max) && o.y_max > o.y_min &&
                   (!o.log_y || o.y_min > 0);
    if (xmin > xmax) {
        xmin = 0;
        xmax = 1;
    }
    if (ymin > ymax) {
        ymin = 0;
        ymax = 1;
    }
    auto widen = [](double& lo, double& hi, double half) {
        if (hi > lo) return;
        double d = lo == 0 ? half : std::max(std::fabs(lo) * 0.1, 1e-300);
        lo -= d;
        hi += d;
    };
    widen(xmin, xmax, 0.5);
    if (fixed_y) {
        ymin = ty(o.y_min);
        ymax = ty(o.y_max);
    } else if (o.log_y && !(ymax > ymin)) {
        ymin -= 0.5;
        ymax += 0.5;
    } else {
        widen(ymin, ymax, 0.5);
        double pad = 0.05 * (ymax - ymin);
        ymin -= pad;
        ymax += pad;
    }

    // Ticks, then margins sized to their labels.
    std::vector<double> minor;
    std::vector<Tick> yt = o.log_y ? log_ticks(ymin, ymax, minor) : linear_ticks(ymin, ymax, 6, false);
    std::vector<Tick> xt = linear_ticks(xmin, xmax, std::max(2, W / 110), false);
    int ylab_w = 0;
    for (const Tick& t : yt) ylab_w = std::max(ylab_w, text_width(t.label));
    int title_scale = (!o.title.empty() && text_width(o.title, 2) <= W - 20) ? 2 : 1;
    int top = o.title.empty() ? 12 : 10 + kCharH * title_scale + 8;
    int left = 8 + (o.y_label.empty() ? 0 : kCharH + 6) + ylab_w + 4 + 4;
    int bottom = 4 + 4 + kCharH + (o.x_label.empty() ? 0 : kCharH + 8) + 8;
    int right = 12;
    if (!xt.empty()) right = std::max(right, text_width(xt.back().label) / 2 + 4);
    int x0 = left, x1 = W - 1 - right, y0 = top, y1 = H - 1 - bottom;
    if (x1 - x0 < 20 || y1 - y0 < 20) {  // labels too wide for the canvas: drop them rather than fail
        x0 = 10;
        y0 = 10;
        x1 = W - 11;
        y1 = H - 11;
    }
    auto px = [&](double x) { return x0 + static_cast<int>(std::lround((x - xmin) / (xmax - xmin) * (x1 - x0))); };
    auto py = [&](double y) { return y1 - static_cast<int>(std::lround((y - ymin) / (ymax - ymin) * (y1 - y0))); };

    std::vector<uint8_t> rgb(static_cast<size_t>(W) * H * 3, 255);
    Canvas c{W, H, rgb};

    // Grid, frame, ticks and their labels.
    for (const Tick& t : xt) c.vline(px(t.pos), y0, y1, grid_c);
    for (const Tick& t : yt) c.hline(x0, x1, py(t.pos), grid_c);
    c.rect(x0, y0, x1, y1, frame_c);
    for (double m : minor) c.hline(x0 - 2, x0, py(m), frame_c);
    for (const Tick& t : xt) {
        int x = px(t.pos);
        c.vline(x, y1, y1 + 4, frame_c);
        c.text(x - text_width(t.label) / 2, y1 + 8, t.label, black);
    }
    for (const Tick& t : yt) {
        int y = py(t.pos);
        c.hline(x0 - 4, x0, y, frame_c);
        c.text(x0 - 8 - text_width(t.label), y - kCharH / 2, t.label, black);
    }
    if (!o.title.empty()) c.text((W - text_width(o.title, title_scale)) / 2, 8, o.title, black, title_scale);
    if (!o.x_label.empty()) c.text((x0 + x1 - text_width(o.x_label)) / 2, y1 + 8 + kCharH + 8, o.x_label, black);
    if (!o.y_label.empty()) c.text_up(8, (y0 + y1 + text_width(o.y_label)) / 2, o.y_label, black);

    // The data, clipped to the frame's inside.
    c.clip = true;
    c.cx0 = x0 + 1;
    c.cy0 = y0 + 1;
    c.cx1 = x1 - 1;
    c.cy1 = y1 - 1;
    for (const Series& s : series) {
        size_t n = s.x.size();
        for (size_t i = 0; i < n; ++i) {
            if (!valid(s.x[i], s.y[i])) continue;
            int xa = px(s.x[i]), ya = py(ty(s.y[i]));
            bool next = i + 1 < n && valid(s.x[i + 1], s.y[i + 1]);
            bool prev = i > 0 && valid(s.x[i - 1], s.y[i - 1]);
            if (next) c.line(xa, ya, px(s.x[i + 1]), py(ty(s.y[i + 1])), s.color, lw);
            else if (!prev) c.fill(xa - 1 - lw / 2, ya - 1 - lw / 2, xa + 1 + lw / 2, ya + 1 + lw / 2, s.color);
        }
    }

    // Legend, top right inside the frame.
    c.clip = false;
    int named = 0, name_w = 0;
    for (const Series& s : series)
        if (!s.name.empty()) {
            ++named;
            name_w = std::max(name_w, text_width(s.name));
        }
    if (named > 0) {
        int bw = 6 + 16 + 5 + name_w + 6, bh = 5 + named * (kCharH + 4) + 1;
        int bx1 = x1 - 6, bx0 = std::max(x0 + 2, bx1 - bw), by0 = y0 + 6, by1 = by0 + bh;
        c.fill(bx0, by0, bx1, by1, white);
        c.rect(bx0, by0, bx1, by1, {170, 170, 170});
        int row = 0;
        for (const Series& s : series) {
            if (s.name.empty()) continue;
            int ty0 = by0 + 5 + row * (kCharH + 4);
            c.fill(bx0 + 6, ty0 + 2, bx0 + 6 + 15, ty0 + 4, s.color);
            c.text(bx0 + 6 + 16 + 5, ty0, s.name, black);
            ++row;
        }
    }
    return rgb;
}

void write_line_plot_png(const std::string& path, const std::vector<Series>& series, const PlotOptions& o) {
    std::vector<uint8_t> rgb = render_line_plot(series, o);
    data::write_png(path, rgb.data(), o.height, o.width, 3);
}

}  // namespace stf::report
