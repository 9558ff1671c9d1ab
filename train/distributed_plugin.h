// The C interface between train/distributed.cpp (in every program) and libstf_dist.so
// (train/mpi/stf_dist_plugin.cpp, built only where MPI is found). Programs load the plugin with
// dlopen only when mpirun started them, so a single-process run needs no MPI or NCCL library.
//
// Every function returns 0 on success; on failure it writes a message into err (err_len bytes,
// NUL-terminated) and returns non-zero. Collectives give up after the timeout passed to init.
#pragma once
#include <stdint.h>

extern "C" {

#define STF_DIST_ABI 1

struct StfDistPlugin {
    int abi;  // STF_DIST_ABI
    // Joins the job. local_rank numbers the ranks on this machine (each takes one GPU).
    int (*init)(double timeout_s, int* rank, int* size, int* local_rank, char* err, int err_len);
    // Host buffers through MPI. Sums are bit-identical on every rank (reduced at rank 0, then broadcast).
    int (*all_reduce_sum_f32)(float* data, int64_t n, char* err, int err_len);
    int (*all_reduce_sum_f64)(double* data, int64_t n, char* err, int err_len);
    // recv holds size * bytes: rank r's bytes at r * bytes.
    int (*all_gather_bytes)(const void* send, int64_t bytes, void* recv, char* err, int err_len);
    // GPU buffers through NCCL on `stream` (a cudaStream_t); null when built without CUDA.
    int (*gpu_all_reduce_sum_f32)(float* data, int64_t n, void* stream, char* err, int err_len);
    int (*gpu_all_gather_f32)(const float* send, int64_t n, float* recv, void* stream, char* err, int err_len);
    // Ends the whole job (MPI_Abort); does not return.
    void (*abort)(int code);
    void (*finalize)(void);
};

// The plugin's one exported symbol.
const StfDistPlugin* stf_dist_plugin(void);
}
