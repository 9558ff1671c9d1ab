// FID's plumbing (metrics/fid.h, metrics/snapshot_fid.h): reference files in EDM's format, generated
// images as 8-bit pixels, metric names. The network and the distance have their own tests.
#include <doctest/doctest.h>

#include "data/npz.h"
#include "metrics/fid.h"
#include "metrics/snapshot_fid.h"
#include "tensor/ops.h"
#include "tests/temp_files.h"

using namespace stf;
using namespace stf::metrics;

TEST_CASE("FID reference files: round trip and clear errors for mismatched arrays") {
    test::TempDir dir;
    FeatureStats s;
    s.dim = 3;
    s.count = 10;
    s.mean = {1, 2, 3};
    s.cov = {2, 0.5, 0, 0.5, 1, 0, 0, 0, 3};
    std::string path = dir.file("ref.npz");
    save_fid_reference(path, s);
    FeatureStats r = load_fid_reference(path);
    CHECK(r.dim == 3);
    CHECK(r.mean == s.mean);
    CHECK(r.cov == s.cov);
    CHECK(frechet_distance(r, s) == doctest::Approx(0).scale(1));

    data::write_npz(path, {{"mu", ops::zeros({3}, DType::F64)}, {"sigma", ops::zeros({4, 4}, DType::F64)}});
    CHECK_THROWS_WITH_AS(load_fid_reference(path), doctest::Contains("do not match"), Error);
    data::write_npz(path, {{"mean", ops::zeros({3}, DType::F64)}});
    CHECK_THROWS_WITH_AS(load_fid_reference(path), doctest::Contains("no 'mu' and 'sigma'"), Error);
}

TEST_CASE("samples_to_pixels: EDM's conversion to 8 bits, channels first") {
    // x * 127.5 + 128, clipped, truncated: -1 -> 0 (0.5 truncated), 0 -> 128, 1 -> 255, 2 -> 255.
    Tensor x = ops::from_vector({-1, 0, 1, 2, -3, 0.5}, {1, 2, 1, 3});
    Tensor p = samples_to_pixels(x);
    CHECK(p.shape() == Shape{1, 2, 1, 3});
    CHECK(p.to_vector() == std::vector<double>{0, 128, 255, 255, 0, 191});
}

TEST_CASE("FID metric names") {
    CHECK(fid_metric_images("fid50k") == 50000);
    CHECK(fid_metric_images("fid10k") == 10000);
    CHECK(fid_metric_images("fid1000") == 1000);
    for (const char* bad : {"fid", "fid1", "kid50k", "fid5x", "fidk", "fid-3"})
        CHECK_THROWS_WITH_AS(fid_metric_images(bad), doctest::Contains("is not a FID metric"), Error);
}
