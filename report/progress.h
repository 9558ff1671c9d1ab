// Progress reporting: a one-line progress bar on stderr, redrawn in place with '\r'. It draws only when stderr is a terminal,
// so logs and pipes stay clean.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

#include "tensor/tensor.h"

namespace stf::report {

// Peak memory so far: the caching allocator's high-water mark on CUDA, the process's peak resident set
// (VmHWM) on the CPU.
double peak_memory_gib(Device device);

class ProgressBar {
public:
    // total <= 0: unknown, shows the count and rate without a bar.
    ProgressBar(int64_t total, std::string label);
    ~ProgressBar();  // finishes the line if finish() was not called
    ProgressBar(const ProgressBar&) = delete;
    ProgressBar& operator=(const ProgressBar&) = delete;

    // Records progress; redraws at most ~10 times a second (and always when done reaches total).
    void update(int64_t done, const std::string& suffix = "");
    // Draws the final state and ends the line. Further calls do nothing.
    void finish();

    bool enabled() const { return enabled_; }
    // The line update() would draw, without the '\r' and padding (for tests).
    std::string render(int64_t done, const std::string& suffix, double elapsed_s) const;

private:
    void draw(bool force);

    int64_t total_;
    std::string label_;
    bool enabled_;
    bool finished_ = false;
    int64_t done_ = 0;
    std::string suffix_;
    size_t last_len_ = 0;
    std::chrono::steady_clock::time_point start_, last_draw_;
    bool drawn_ = false;
};

}  // namespace stf::report
