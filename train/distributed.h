// The process group of data-parallel training: one process per GPU (or CPU), launched by mpirun.
//
// A program started normally is a group of one and every collective is a copy or a no-op; it needs
// neither MPI nor NCCL installed. Started by mpirun (OpenMPI, MPICH or a PMI launcher such as srun),
// it loads the plugin libstf_dist.so built beside it (train/mpi/stf_dist_plugin.cpp), which uses MPI
// for host buffers and NCCL for GPU buffers. Every collective has a deadline: a rank that died or
// stopped answering makes the others fail with a message instead of hanging.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace stf::train {

class ProcessGroup {
public:
    // The group this process belongs to, created on first use. timeout_s bounds every collective.
    static ProcessGroup& world(double timeout_s = 600);
    // The group if world() has run, else null (error handlers must not start MPI just to stop it).
    static ProcessGroup* if_created();

    int rank() const { return rank_; }
    int size() const { return size_; }
    bool is_root() const { return rank_ == 0; }
    // Started by an MPI launcher: collectives go through MPI/NCCL, even for a job of one rank (which
    // is how `mpirun -np 1` tests that path on a machine with one GPU).
    bool distributed() const { return backend_ != nullptr; }
    // How the process was launched, for the start-up line: "single process" or "MPI, rank r of n".
    std::string describe() const;

    // In place: every rank ends with the element-wise sum over ranks, bit-identical on every rank.
    void all_reduce_sum(Tensor& t);
    void all_reduce_sum(std::vector<double>& values);
    // Concatenates along dimension 0 every rank's `t` (same shape on every rank), rank 0's first.
    Tensor all_gather(const Tensor& t);
    // One string from every rank, in rank order (lengths may differ).
    std::vector<std::string> all_gather(const std::string& text);

    // Ends every rank of the job after printing `message`: what a rank calls when it fails, so the
    // others do not wait for it.
    [[noreturn]] void abort(const std::string& message);

    struct Backend;  // the loaded plugin (distributed.cpp)

private:
    ProcessGroup() = default;
    int rank_ = 0, size_ = 1;
    double timeout_s_ = 600;
    std::unique_ptr<Backend> backend_;
};

// Sums every parameter's gradient over the ranks in one collective; a missing gradient counts as zeros.
void all_reduce_gradients(ProcessGroup& group, const std::vector<Tensor>& params);

// A 64-bit hash of the tensors' exact bits, for checking cheaply that ranks still hold the same state.
uint64_t fingerprint(const std::vector<Tensor>& tensors);

}  // namespace stf::train
