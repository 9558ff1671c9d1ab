#include "train/distributed.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "train/distributed_plugin.h"
#include "cuda/runtime.h"
#include "autograd/node.h"
#include "tensor/ops.h"

namespace stf::train {

namespace fs = std::filesystem;

struct ProcessGroup::Backend {
    void* library = nullptr;
    const StfDistPlugin* api = nullptr;
    char err[1024] = {};
};

namespace {

// Launchers announce the job in the environment: OpenMPI, MPICH/Hydra, Slurm's PMI and PMIx.
bool launched_by_mpi() {
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
        if (std::getenv(name)) return true;
    return false;
}

ProcessGroup* g_created = nullptr;

fs::path executable_dir() {
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    return ec ? fs::current_path() : exe.parent_path();
}

// STF_DIST_PLUGIN names the plugin explicitly; otherwise it sits beside the program.
std::string plugin_path() {
    if (const char* v = std::getenv("STF_DIST_PLUGIN")) return v;
    return (executable_dir() / "libstf_dist.so").string();
}

}  // namespace

ProcessGroup& ProcessGroup::world(double timeout_s) {
    static ProcessGroup* group = [timeout_s] {
        auto* g = new ProcessGroup();  // never destroyed: MPI must outlive every static that uses it
        g->timeout_s_ = timeout_s;
        g_created = g;
        if (!launched_by_mpi()) return g;
        std::string path = plugin_path();
        void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
        STF_CHECK(lib, "started by an MPI launcher, but the MPI plugin " << path << " cannot be loaded ("
                                                                        << dlerror()
                                                                        << "); build stf where MPI is installed "
                                                                           "(Debian: libopenmpi-dev) or run without mpirun");
        using Entry = const StfDistPlugin* (*)();
        auto entry = reinterpret_cast<Entry>(dlsym(lib, "stf_dist_plugin"));
        STF_CHECK(entry, path << " is not an stf MPI plugin (no stf_dist_plugin symbol)");
        g->backend_ = std::make_unique<Backend>();
        g->backend_->library = lib;
        g->backend_->api = entry();
        STF_CHECK(g->backend_->api->abi == STF_DIST_ABI,
                  path << " was built for another version of stf (interface " << g->backend_->api->abi << ", expected "
                       << STF_DIST_ABI << "); rebuild it with this program");
        int local_rank = 0;
        if (g->backend_->api->init(timeout_s, &g->rank_, &g->size_, &local_rank, g->backend_->err,
                                   sizeof(g->backend_->err)))
            throw Error(std::string("MPI: ") + g->backend_->err);
        // A normal exit leaves MPI cleanly; failures end the job through abort() instead.
        std::atexit([] { g_created->backend_->api->finalize(); });
        // One GPU per rank on each machine, before any CUDA work picks device 0 for everyone.
        if (cuda::available()) cuda::set_device(local_rank % cuda::device_count());
        return g;
    }();
    return *group;
}

ProcessGroup* ProcessGroup::if_created() { return g_created; }

std::string ProcessGroup::describe() const {
    if (!backend_) return "single process";
    return "MPI, rank " + std::to_string(rank_) + " of " + std::to_string(size_);
}

#define STF_DIST_CALL(call)                                                          \
    do {                                                                             \
        if (backend_->api->call) throw Error(std::string("MPI: ") + backend_->err); \
    } while (0)

void ProcessGroup::all_reduce_sum(Tensor& t) {
    if (!distributed()) return;
    STF_CHECK(t.is_contiguous() && t.dtype() == DType::F32,
              "all_reduce_sum: expected a contiguous float32 tensor, got " << stf::describe(t));
    if (t.device().is_cuda()) {
        STF_CHECK(backend_->api->gpu_all_reduce_sum_f32,
                  "all_reduce_sum: the MPI plugin was built without NCCL, so it cannot reduce GPU tensors");
        STF_DIST_CALL(gpu_all_reduce_sum_f32(t.data<float>(), t.numel(), cuda::stream(), backend_->err,
                                             sizeof(backend_->err)));
    } else {
        STF_DIST_CALL(all_reduce_sum_f32(t.data<float>(), t.numel(), backend_->err, sizeof(backend_->err)));
    }
}

void ProcessGroup::all_reduce_sum(std::vector<double>& values) {
    if (!distributed()) return;
    STF_DIST_CALL(all_reduce_sum_f64(values.data(), static_cast<int64_t>(values.size()), backend_->err,
                                     sizeof(backend_->err)));
}

Tensor ProcessGroup::all_gather(const Tensor& t) {
    if (!distributed()) return t;
    STF_CHECK(t.dtype() == DType::F32 && t.ndim() >= 1,
              "all_gather: expected a float32 tensor with a leading dimension, got " << stf::describe(t));
    Tensor send = ops::contiguous(t);
    Shape shape = send.shape();
    shape[0] *= size_;
    Tensor out = ops::empty(shape, DType::F32, t.device());
    if (t.device().is_cuda()) {
        STF_CHECK(backend_->api->gpu_all_gather_f32,
                  "all_gather: the MPI plugin was built without NCCL, so it cannot gather GPU tensors");
        STF_DIST_CALL(gpu_all_gather_f32(send.data<float>(), send.numel(), out.data<float>(), cuda::stream(),
                                         backend_->err, sizeof(backend_->err)));
    } else {
        STF_DIST_CALL(all_gather_bytes(send.data<float>(), send.numel() * 4, out.data<float>(), backend_->err,
                                       sizeof(backend_->err)));
    }
    return out;
}

std::vector<std::string> ProcessGroup::all_gather(const std::string& text) {
    if (!distributed()) return {text};
    // Lengths first, then every text padded to the longest.
    std::vector<int64_t> lengths(static_cast<size_t>(size_));
    int64_t mine = static_cast<int64_t>(text.size());
    STF_DIST_CALL(all_gather_bytes(&mine, sizeof(mine), lengths.data(), backend_->err, sizeof(backend_->err)));
    int64_t longest = *std::max_element(lengths.begin(), lengths.end());
    std::string padded = text;
    padded.resize(static_cast<size_t>(longest));
    std::string all(static_cast<size_t>(longest * size_), '\0');
    if (longest > 0)
        STF_DIST_CALL(all_gather_bytes(padded.data(), longest, all.data(), backend_->err, sizeof(backend_->err)));
    std::vector<std::string> out;
    for (int r = 0; r < size_; ++r) out.push_back(all.substr(static_cast<size_t>(r * longest), static_cast<size_t>(lengths[r])));
    return out;
}

void all_reduce_gradients(ProcessGroup& group, const std::vector<Tensor>& params) {
    if (!group.distributed() || params.empty()) return;
    NoGradGuard no_grad;
    std::vector<Tensor> flat;
    for (const Tensor& p : params) {
        Tensor g = p.grad();
        flat.push_back(g.defined() ? ops::reshape(g, {-1}) : ops::zeros({p.numel()}, p.dtype(), p.device()));
    }
    Tensor bucket = ops::cat(flat, 0);  // one collective instead of one per tensor
    group.all_reduce_sum(bucket);
    int64_t at = 0;
    for (const Tensor& p : params) {
        Tensor summed = ops::reshape(ops::narrow(bucket, 0, at, p.numel()), p.shape());
        at += p.numel();
        Tensor g = p.grad();
        if (g.defined()) ops::copy_(g, summed);
        else const_cast<Tensor&>(p).set_grad(ops::clone(summed));
    }
}

uint64_t fingerprint(const std::vector<Tensor>& tensors) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (const Tensor& t : tensors) {
        Tensor host = ops::contiguous(ops::to(t, Device::cpu()));
        const auto* bytes = static_cast<const unsigned char*>(host.raw_data());
        size_t n = static_cast<size_t>(host.numel()) * dtype_size(host.dtype()), i = 0;
        for (; i + 8 <= n; i += 8) {  // a word at a time: the state is hundreds of MB
            uint64_t w;
            std::memcpy(&w, bytes + i, 8);
            h = (h ^ w) * 1099511628211ull;
        }
        for (; i < n; ++i) h = (h ^ bytes[i]) * 1099511628211ull;
    }
    return h;
}

void ProcessGroup::abort(const std::string& message) {
    std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    if (backend_) backend_->api->abort(1);
    std::exit(1);
}

}  // namespace stf::train
