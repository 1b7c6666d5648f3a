// bench/bench_libtorch.cpp - the libtorch (C++ PyTorch, 1.13 from Debian)
// twins of bench_call and bench_train, one thread, for the ratios of issue 21
// measured in one run (bench/bench_call.sh and bench/bench_train.sh run it
// beside nnmod's; bench/targets.sh quotes them). Built only where libtorch's
// headers and libraries are found (bench/CMakeLists.txt).
//
// Prints JSON lines (wall time: the median of REPS repetitions; cpu: the
// median of this thread's CPU time over the same repetitions):
//   libtorch_identity_direct      torch::nn::Identity called directly
//                                 (module->forward(x): an inlined C++ call)
//   libtorch_identity_anymodule   the same module through torch::nn::AnyModule,
//                                 the type-erased holder Sequential calls its
//                                 children through: the call path a runtime
//                                 that calls modules it knows only by handle
//                                 pays (nnm_module_call's counterpart)
//   libtorch_relu_call            torch::relu(x) on a 1 x 16 tensor (one op
//                                 through the dispatcher, a new tensor out)
//   libtorch_seq50_linear16_relu_grad  Sequential of 50 x (Linear(16, 16),
//                                 ReLU) at batch 1, grad mode on (parameters
//                                 require grad: every Linear records a node)
//   libtorch_seq50_linear16_relu  the same under torch::NoGradGuard
//   libtorch_train_step_mlp784_256_10  samples/s of bench_train's step: MLP
//                                 784-256-10, batch 64, cross-entropy,
//                                 backward, SGD (lr 0.01, momentum 0.9)
// Usage: bench_libtorch [ITERS] [call|train]   (ITERS: identity/relu calls
//   per repetition, default 400000, seq50 takes ITERS / 200; "call": the call
//   path and seq50 only, "train": the training step only; default both)
#include <torch/torch.h>

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

constexpr int kReps = 15;

double clock_s(clockid_t id) {
    timespec ts;
    clock_gettime(id, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

struct Timing {
    double wall, cpu, min; // seconds per call: medians of wall and thread CPU time; fastest repetition
};

// Times `iters` calls of fn, kReps times.
template <typename F> Timing per_call(long iters, F &&fn) {
    std::vector<double> wall, cpu;
    for (int r = 0; r < kReps; r++) {
        const double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        for (long i = 0; i < iters; i++)
            fn();
        wall.push_back((clock_s(CLOCK_MONOTONIC) - t0) / static_cast<double>(iters));
        cpu.push_back((clock_s(CLOCK_THREAD_CPUTIME_ID) - c0) / static_cast<double>(iters));
    }
    const double fastest = *std::min_element(wall.begin(), wall.end());
    return {median(wall), median(cpu), fastest};
}

void print(const char *name, const Timing &t, double scale, const char *unit, const char *extra) {
    std::printf("{\"bench\": \"%s\", \"value\": %.3f, \"unit\": \"%s\", \"cpu\": %.3f, \"min\": %.3f, "
                "\"libtorch\": \"%s\", \"threads\": %d%s}\n",
                name, t.wall * scale, unit, t.cpu * scale, t.min * scale, TORCH_VERSION, torch::get_num_threads(),
                extra);
}

} // namespace

int main(int argc, char **argv) {
    long iters = argc > 1 ? std::atol(argv[1]) : 400000;
    if (iters < 1)
        iters = 1;
    const bool call = argc <= 2 || std::strcmp(argv[2], "train") != 0;
    const bool train = argc <= 2 || std::strcmp(argv[2], "call") != 0;
    torch::set_num_threads(1);
    torch::manual_seed(0);
    const torch::Tensor x = torch::zeros({1, 16});

    // the call path
    if (call) {
        torch::NoGradGuard no_grad;
        torch::nn::Identity id;
        torch::nn::AnyModule any(id);
        torch::Tensor sink;
        for (long i = 0; i < iters / 10; i++)
            sink = any.forward(x);
        print("libtorch_identity_direct", per_call(iters, [&] { sink = id->forward(x); }), 1e9, "ns/call", "");
        print("libtorch_identity_anymodule", per_call(iters, [&] { sink = any.forward(x); }), 1e9, "ns/call", "");
        print("libtorch_relu_call", per_call(iters, [&] { sink = torch::relu(x); }), 1e9, "ns/call", "");
    }

    // seq50: 50 x (Linear(16, 16), ReLU) at batch 1
    if (call) {
        torch::nn::Sequential seq;
        for (int i = 0; i < 50; i++) {
            seq->push_back(torch::nn::Linear(16, 16));
            seq->push_back(torch::nn::ReLU());
        }
        const long deep = iters / 200 + 1;
        torch::Tensor y;
        for (long i = 0; i < deep; i++)
            y = seq->forward(x);
        print("libtorch_seq50_linear16_relu_grad", per_call(deep, [&] { y = seq->forward(x); }), 1e6, "us/forward",
              ", \"grad\": true");
        torch::NoGradGuard no_grad;
        for (long i = 0; i < deep; i++)
            y = seq->forward(x);
        print("libtorch_seq50_linear16_relu", per_call(deep, [&] { y = seq->forward(x); }), 1e6, "us/forward",
              ", \"grad\": false");
    }

    // bench_train's step
    if (train) {
        const int64_t batch = 64;
        const int steps = 200;
        torch::nn::Sequential model(torch::nn::Linear(784, 256), torch::nn::ReLU(), torch::nn::Linear(256, 10));
        torch::nn::CrossEntropyLoss loss_fn;
        torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
        const torch::Tensor xb = torch::rand({batch, 784});
        const torch::Tensor tb = torch::arange(batch) % 10;
        auto step = [&] {
            opt.zero_grad();
            torch::Tensor loss = loss_fn(model->forward(xb), tb);
            loss.backward();
            opt.step();
        };
        for (int i = 0; i < 5; i++)
            step();
        const Timing t = per_call(steps, step);
        std::printf("{\"bench\": \"libtorch_train_step_mlp784_256_10\", \"value\": %.0f, \"unit\": \"samples/s\", "
                    "\"per_cpu_second\": %.0f, \"batch\": %lld, \"libtorch\": \"%s\", \"threads\": %d}\n",
                    static_cast<double>(batch) / t.wall, static_cast<double>(batch) / t.cpu,
                    static_cast<long long>(batch), TORCH_VERSION, torch::get_num_threads());
    }
    return 0;
}
