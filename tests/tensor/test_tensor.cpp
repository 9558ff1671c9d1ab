// Tensor metadata, views, broadcasting, conversions, RNG streams and error messages.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <utility>

#include "cuda/runtime.h"
#include "tensor/ops.h"
#include "tests/expect_error.h"

using namespace stf;

namespace {
Tensor seq(const Shape& shape, DType dt = DType::F64) {
    Tensor t = ops::arange(shape_numel(shape), dt);
    return ops::reshape(t, shape);
}
}  // namespace

TEST_CASE("a new tensor is contiguous NCHW with row-major strides") {
    Tensor t = ops::zeros({2, 3, 4, 5});
    CHECK(t.strides() == Shape{60, 20, 5, 1});
    CHECK(t.is_contiguous());
    CHECK(t.numel() == 120);
    CHECK(t.size(-1) == 5);
    CHECK(describe(t) == "f32[2, 3, 4, 5] on cpu");
    CHECK(Tensor::empty({0, 3}).numel() == 0);
}

TEST_CASE("views share storage and index correctly") {
    Tensor t = seq({2, 3, 4});
    Tensor tr = ops::transpose(t, 0, 2);  // [4, 3, 2]
    CHECK(tr.shape() == Shape{4, 3, 2});
    CHECK_FALSE(tr.is_contiguous());
    CHECK(tr.storage() == t.storage());
    std::vector<double> v = ops::contiguous(tr).to_vector();
    // tr[i, j, k] = t[k, j, i] = 12k + 4j + i
    CHECK(v[0 * 6 + 1 * 2 + 1] == 12 + 4 + 0);
    CHECK(v[3 * 6 + 2 * 2 + 1] == 12 + 8 + 3);

    Tensor n = ops::narrow(t, 1, 1, 2);  // rows 1..2
    CHECK(n.shape() == Shape{2, 2, 4});
    CHECK(ops::contiguous(n).to_vector()[0] == 4);
    CHECK(ops::contiguous(n).to_vector()[8] == 16);

    Tensor p = ops::permute(t, {2, 0, 1});
    CHECK(p.shape() == Shape{4, 2, 3});
    CHECK(ops::contiguous(p).to_vector()[1] == 4);  // p[0,0,1] = t[0,1,0]

    Tensor u = ops::unsqueeze(t, 1);
    CHECK(u.shape() == Shape{2, 1, 3, 4});
    CHECK(ops::squeeze(u, 1).shape() == t.shape());
    CHECK_THROWS_WITH_AS(ops::squeeze(t, 0), doctest::Contains("squeeze: dim 0"), Error);

    Tensor r = ops::reshape(t, {6, -1});
    CHECK(r.shape() == Shape{6, 4});
    CHECK(r.storage() == t.storage());  // contiguous: a view
    Tensor rt = ops::reshape(tr, {-1});  // not contiguous: copied in logical order
    CHECK(rt.to_vector()[1] == 12);
    CHECK_THROWS_WITH_AS(ops::reshape(t, {5, -1}), doctest::Contains("cannot reshape f64[2, 3, 4]"), Error);
}

TEST_CASE("expand broadcasts with zero strides and writes through views") {
    Tensor col = seq({3, 1});
    Tensor e = ops::expand(col, {2, 3, 4});
    CHECK(e.strides() == Shape{0, 1, 0});
    std::vector<double> v = ops::contiguous(e).to_vector();
    CHECK(v[4 * 2 + 3] == 2);
    CHECK(v[12 + 4 + 1] == 1);
    CHECK_THROWS_WITH_AS(ops::expand(seq({3, 2}), {3, 4}), doctest::Contains("cannot broadcast"), Error);

    Tensor z = ops::zeros({3, 4}, DType::F64);
    Tensor slot = ops::narrow(z, 1, 1, 2);
    ops::copy_(slot, ops::full({3, 1}, 7.0, DType::F64));
    std::vector<double> zv = z.to_vector();
    CHECK(zv[0] == 0);
    CHECK(zv[1] == 7);
    CHECK(zv[2] == 7);
    CHECK(zv[3] == 0);
}

TEST_CASE("binary ops broadcast like NumPy") {
    Tensor a = seq({2, 1, 3});
    Tensor b = seq({4, 1});
    Tensor c = ops::add(a, b);
    CHECK(c.shape() == Shape{2, 4, 3});
    std::vector<double> v = c.to_vector();
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 4; ++j)
            for (int k = 0; k < 3; ++k) CHECK(v[(i * 4 + j) * 3 + k] == (i * 3 + k) + j);
    CHECK_THROWS_WITH_AS(ops::add(seq({2, 3}), seq({4})), doctest::Contains("shapes [2, 3] and [4] do not broadcast"),
                         Error);
    CHECK_THROWS_WITH_AS(ops::add(seq({2}), seq({2}, DType::F32)), doctest::Contains("dtype mismatch"), Error);
}

TEST_CASE("dtype conversions round trip, bf16 rounds to 8 significant bits") {
    Tensor x = ops::from_vector({1.0, -2.5, 3.14159265, 1e-3}, {4}, DType::F64);
    Tensor f = ops::to(x, DType::F32);
    CHECK(f.dtype() == DType::F32);
    CHECK(f.to_vector()[2] == doctest::Approx(3.14159265).epsilon(1e-7));
    Tensor h = ops::to(f, DType::BF16);
    CHECK(h.dtype() == DType::BF16);
    std::vector<double> hv = h.to_vector();
    CHECK(hv[0] == 1.0);
    CHECK(hv[1] == -2.5);
    CHECK(hv[2] == 3.140625);  // nearest bf16 to pi
    CHECK(std::abs(hv[3] - 1e-3) < 1e-3 * 4e-3);
    CHECK_THROWS_WITH_AS(ops::unary(UnaryOp::Exp, h), doctest::Contains("bf16 tensors are storage only"), Error);
}

TEST_CASE("the same seed gives the same random stream; each op takes a new one") {
    Generator g1(42), g2(42);
    Tensor a = ops::rand({1000}, g1), b = ops::rand({1000}, g2);
    CHECK(a.to_vector() == b.to_vector());
    CHECK(g1.offset() == 1);
    Tensor c = ops::rand({1000}, g1);
    CHECK(c.to_vector() != a.to_vector());
    Tensor n = ops::randn({20000}, g1, DType::F64);
    std::vector<double> v = n.to_vector();
    double m = 0, s2 = 0;
    for (double x : v) m += x;
    m /= v.size();
    for (double x : v) s2 += (x - m) * (x - m);
    s2 /= v.size();
    CHECK(std::abs(m) < 0.03);
    CHECK(std::abs(s2 - 1) < 0.04);
    // float64 draws are the float32 draws widened, so a gradient check sees the same noise.
    Generator g3(7), g4(7);
    std::vector<double> r64 = ops::randn({64}, g3, DType::F64).to_vector();
    std::vector<double> r32 = ops::randn({64}, g4, DType::F32).to_vector();
    CHECK(r64 == r32);
}

TEST_CASE("a generator keyed to samples draws the same numbers for a sample in any batch") {
    // Samples 3..6 of step 11 drawn as one batch, then as samples 3..4 and 5..6 in two batches.
    Generator whole(5), first(5), second(5);
    whole.key_rows(11, 3);
    first.key_rows(11, 3);
    second.key_rows(11, 5);
    for (int draw = 0; draw < 3; ++draw) {
        CAPTURE(draw);
        std::vector<double> all = ops::randn({4, 2, 3}, whole).to_vector();
        std::vector<double> a = ops::randn({2, 2, 3}, first).to_vector(), b = ops::randn({2, 2, 3}, second).to_vector();
        a.insert(a.end(), b.begin(), b.end());
        CHECK(all == a);
    }
    // Another step, or another draw position, gives other numbers; re-keying restarts the sequence.
    Generator later(5);
    later.key_rows(12, 3);
    Generator again(5);
    again.key_rows(11, 3);
    std::vector<double> at_step_11 = ops::rand({4}, again).to_vector();
    CHECK(ops::rand({4}, later).to_vector() != at_step_11);
    CHECK(ops::rand({4}, again).to_vector() != at_step_11);
    again.key_rows(11, 3);
    CHECK(ops::rand({4}, again).to_vector() == at_step_11);
    // Unkeyed again: the plain stream, one offset per op.
    again.unkey_rows();
    uint64_t before = again.offset();
    ops::rand({4}, again);
    CHECK(again.offset() == before + 1);
}

TEST_CASE("a keyed generator refuses draws past its sample and draw limits") {
    Generator g(1);
    CHECK_THROWS_WITH_AS(g.key_rows(1, Generator::kRowKeyedSamples), doctest::Contains("sample index"), Error);
    CHECK_THROWS_WITH_AS(g.key_rows(uint64_t(1) << 32, 0), doctest::Contains("step"), Error);
    g.key_rows(1, Generator::kRowKeyedSamples - 2);
    CHECK_THROWS_WITH_AS(ops::rand({3}, g), doctest::Contains("pass"), Error);
    g.key_rows(1, 0);
    for (uint64_t i = 0; i < Generator::kRowKeyedDraws; ++i) g.next_draw(1, 1);
    CHECK_THROWS_WITH_AS(ops::rand({1}, g), doctest::Contains("draws since the last key_rows"), Error);
}

// Row keys in memory (tensor/random.h), what a replayed CUDA graph draws with: the same numbers as the
// key passed by value, for every random op a training round makes, and the key read when the kernel
// runs, not when the draw is planned.
TEST_CASE("a generator keyed to a row key in memory draws what key_rows(step, first_row) draws") {
    auto key = std::make_shared<RowKey>(Device::cpu());
    Generator init(5);
    const Tensor x = ops::rand({3, 8, 4, 4}, init);
    auto round = [&](Generator& g) {  // sigma, noise, a Bernoulli draw, and the fused dropout's mask
        std::vector<std::vector<double>> out;
        out.push_back(ops::rand({3, 1, 1, 1}, g).to_vector());
        out.push_back(ops::randn({3, 2, 5, 5}, g).to_vector());
        out.push_back(ops::bernoulli({3, 7}, 0.3, g).to_vector());
        const DropoutStream d = ops::dropout_stream(x.shape(), 0.25, g, x.device());
        out.push_back(ops::group_norm(x, Tensor(), Tensor(), 4, 1e-5, {Tensor(), true, d, std::nullopt}).y.to_vector());
        return out;
    };
    for (auto [step, first_row] : {std::pair<uint64_t, uint64_t>{0, 0}, {5, 64}, {123456, 1000}}) {
        Generator by_value(7), in_memory(7);
        by_value.key_rows(step, first_row);
        key->set(step, first_row);
        in_memory.key_rows(key);
        CHECK(in_memory.row_key() == key.get());
        CHECK(round(in_memory) == round(by_value));
    }
    // Planned under one key, run under another: the mask follows the key in memory at run time.
    Generator planned(7), expected(7);
    key->set(9, 32);
    planned.key_rows(key);
    const DropoutStream d = ops::dropout_stream(x.shape(), 0.25, planned, x.device());
    key->set(10, 0);
    expected.key_rows(10, 0);
    const DropoutStream want = ops::dropout_stream(x.shape(), 0.25, expected, x.device());
    CHECK(ops::group_norm(x, Tensor(), Tensor(), 4, 1e-5, {Tensor(), true, d, std::nullopt}).y.to_vector() ==
          ops::group_norm(x, Tensor(), Tensor(), 4, 1e-5, {Tensor(), true, want, std::nullopt}).y.to_vector());
    // key_rows(step, row) and unkey_rows drop the key in memory.
    planned.key_rows(1, 2);
    CHECK(planned.row_key() == nullptr);
    planned.key_rows(key);
    planned.unkey_rows();
    CHECK(planned.row_key() == nullptr);
    // The key's limits are checked when it is set, the draw's rows when it is planned.
    CHECK_THROWS_WITH_AS(key->set(uint64_t(1) << 32, 0), doctest::Contains("step"), Error);
    key->set(1, Generator::kRowKeyedSamples - 2);
    planned.key_rows(key);
    CHECK_THROWS_WITH_AS(ops::rand({3}, planned), doctest::Contains("pass"), Error);
}

TEST_CASE("devices: CUDA requests fail clearly without a device") {
    if (cuda::available()) return;
    CHECK_THROWS_WITH_AS(ops::zeros({2}, DType::F32, Device::cuda()), doctest::Contains("cannot allocate on cuda:0"),
                         Error);
    CHECK(Device::parse("cuda:1").index == 1);
    CHECK_THROWS_WITH_AS(Device::parse("gpu"), doctest::Contains("unknown device 'gpu'"), Error);
}

TEST_CASE("printing shows dtype, shape, device and values") {
    std::ostringstream os;
    os << ops::from_vector({1, 2.5}, {2});
    CHECK(os.str() == "Tensor(f32[2] on cpu, values [1, 2.5])");
}

// Sizes read from files and flags reach shape_numel, contiguous_strides and Tensor::empty; a product
// past int64 must be an stf::Error naming the shape, never a wrapped (small or zero) size.
TEST_CASE("sizes whose product overflows 64 bits are errors, not wrapped counts") {
    const int64_t big = int64_t(1) << 40;
    CHECK(shape_numel({big, 4}) == big * 4);
    CHECK(shape_numel({big, big, 0}) == 0);  // empty whatever the other dims are
    CHECK(test::has(test::error_of([&] { shape_numel({big, big}); }), "[1099511627776, 1099511627776]"));
    CHECK(test::has(test::error_of([&] { shape_numel({256, int64_t(1) << 28, int64_t(1) << 28}); }), "overflows"));
    // Strides of an empty tensor still multiply the other dims.
    CHECK(test::has(test::error_of([&] { contiguous_strides({0, big, big}); }), "overflows"));
    CHECK(contiguous_strides({0, 3, 4}) == Shape{12, 4, 1});
    // Elements fit but bytes do not.
    CHECK(test::has(test::error_of([&] { Tensor::empty({int64_t(1) << 62}, DType::F64); }), "bytes"));
    CHECK(test::has(test::error_of([&] { Tensor::empty({0, big, big}); }), "overflows"));
    CHECK(checked_mul(3, 5, "x") == 15);
    CHECK(test::has(test::error_of([&] { checked_mul(big, big, "the image count"); }), "the image count"));
    CHECK(test::has(test::error_of([&] { checked_mul(-1, 5, "a size"); }), "negative"));
}
