#include "report/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "cuda/runtime.h"

namespace stf::report {

double peak_memory_gib(Device device) {
    if (device.is_cuda()) return static_cast<double>(cuda::allocator_stats().peak_allocated) / (1 << 30);
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / (1 << 20);  // kB -> GiB
    return 0;
}

namespace {

std::string format_duration(double s) {
    if (!std::isfinite(s) || s < 0) return "?";
    long long t = std::llround(s);
    char buf[32];
    if (t >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", t / 3600, (t / 60) % 60, t % 60);
    else std::snprintf(buf, sizeof buf, "%lld:%02lld", t / 60, t % 60);
    return buf;
}

}  // namespace

ProgressBar::ProgressBar(int64_t total, std::string label)
    : total_(total), label_(std::move(label)), enabled_(::isatty(STDERR_FILENO) == 1) {
    start_ = last_draw_ = std::chrono::steady_clock::now();
}

ProgressBar::~ProgressBar() { finish(); }

std::string ProgressBar::render(int64_t done, const std::string& suffix, double elapsed_s) const {
    std::string line = label_;
    if (!line.empty()) line += ' ';
    char buf[128];
    double rate = elapsed_s > 0 ? done / elapsed_s : 0;
    if (total_ > 0) {
        const int width = 30;
        double frac = std::clamp(static_cast<double>(done) / static_cast<double>(total_), 0.0, 1.0);
        int filled = static_cast<int>(frac * width);
        line += '[';
        line.append(static_cast<size_t>(filled), '#');
        line.append(static_cast<size_t>(width - filled), '.');
        line += ']';
        std::snprintf(buf, sizeof buf, " %3d%% %lld/%lld", static_cast<int>(frac * 100), static_cast<long long>(done),
                      static_cast<long long>(total_));
        line += buf;
        if (rate > 0) {
            std::snprintf(buf, sizeof buf, " %.3g/s eta %s", rate,
                          format_duration(static_cast<double>(total_ - std::min(done, total_)) / rate).c_str());
            line += buf;
        }
    } else {
        std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(done));
        line += buf;
        if (rate > 0) {
            std::snprintf(buf, sizeof buf, " %.3g/s", rate);
            line += buf;
        }
    }
    line += ' ';
    line += format_duration(elapsed_s);
    if (!suffix.empty()) {
        line += ' ';
        line += suffix;
    }
    return line;
}

void ProgressBar::update(int64_t done, const std::string& suffix) {
    done_ = done;
    suffix_ = suffix;
    draw(total_ > 0 && done >= total_);
}

void ProgressBar::draw(bool force) {
    if (!enabled_ || finished_) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    drawn_ = true;
    std::string line = render(done_, suffix_, std::chrono::duration<double>(now - start_).count());
    size_t len = line.size();
    if (len < last_len_) line.append(last_len_ - len, ' ');  // erase what the longer line before left
    last_len_ = len;
    std::fprintf(stderr, "\r%s", line.c_str());
    std::fflush(stderr);
}

void ProgressBar::finish() {
    if (finished_) return;
    if (enabled_) {
        draw(true);
        std::fputc('\n', stderr);
        std::fflush(stderr);
    }
    finished_ = true;
}

}  // namespace stf::report
