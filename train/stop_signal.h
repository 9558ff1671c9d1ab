// A graceful stop for training: a preempted cluster job gets SIGTERM (Ctrl-C sends SIGINT) and would
// lose everything since the last training state, by default 25 Mimg. While a StopSignal lives, the first
// SIGINT or SIGTERM only sets a flag: the training loop finishes its step, writes a training state and
// exits non-zero saying how to resume. A second signal stops the process at once (exit status 128 + the
// signal), for a user who does not want to wait for the step.
#pragma once

namespace stf::train {

class StopSignal {
public:
    StopSignal();   // installs the handlers
    ~StopSignal();  // restores the previous ones
    StopSignal(const StopSignal&) = delete;
    StopSignal& operator=(const StopSignal&) = delete;

    // The signal received (SIGINT or SIGTERM), 0 while none has come.
    static int received();
    static const char* name(int signal);
    // For tests: behave as if `signal` had been delivered once.
    static void simulate(int signal);
};

}  // namespace stf::train
