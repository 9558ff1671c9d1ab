#include "train/stop_signal.h"

#include <unistd.h>

#include <csignal>
#include <cstring>

namespace stf::train {

namespace {

volatile std::sig_atomic_t g_received = 0;
struct sigaction g_old_int, g_old_term;

// Only async-signal-safe calls here: write(2) and _exit(2).
void on_signal(int signal) {
    if (g_received != 0) {
        const char msg[] = "\nsecond signal: stopping now, without writing a training state\n";
        [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
        ::_exit(128 + signal);
    }
    g_received = signal;
    const char msg[] = "\nstop requested: finishing this step and writing a training state (signal again to stop now)\n";
    [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
}

}  // namespace

StopSignal::StopSignal() {
    g_received = 0;
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &g_old_int);
    sigaction(SIGTERM, &sa, &g_old_term);
}

StopSignal::~StopSignal() {
    sigaction(SIGINT, &g_old_int, nullptr);
    sigaction(SIGTERM, &g_old_term, nullptr);
}

int StopSignal::received() { return g_received; }

const char* StopSignal::name(int signal) { return signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "a signal"; }

void StopSignal::simulate(int signal) { g_received = signal; }

}  // namespace stf::train
