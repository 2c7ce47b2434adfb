"""quiver.ray on a local Ray cluster (ray.init(num_cpus=2)): the sharded build answers as a
single-process build with the same seed, and a fanned-out search merges shards' top-k."""

import os
import tempfile
import unittest

import numpy as np

import quiver

try:
    import ray

    import quiver.ray as qray
except ImportError:
    ray = None


@unittest.skipIf(ray is None, "SKIPPED quiver.ray tests: Ray is not installed (pip install ray)")
class RayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
        rng = np.random.default_rng(11)
        cls.xb = rng.random((3000, 16), dtype=np.float32)
        cls.xq = rng.random((8, 16), dtype=np.float32)
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        ray.shutdown()
        cls.tmp.cleanup()

    def test_sharded_build_equals_a_single_build(self):
        paths = []
        for i, (a, b) in enumerate([(0, 1200), (1200, 2000), (2000, 3000)]):
            p = os.path.join(self.tmp.name, f"part-{i}.npy")
            np.save(p, self.xb[a:b])
            paths.append(p)
        sharded = os.path.join(self.tmp.name, "sharded")
        self.assertEqual(qray.build(paths, sharded, "IVF16_HNSW8,PQ8x4fs", seed=5), 3000)
        single = os.path.join(self.tmp.name, "single")
        quiver.build(self.xb, single, "IVF16_HNSW8,PQ8x4fs", seed=5)
        a, b = quiver.Index(sharded), quiver.Index(single)
        self.assertEqual(a.ntotal, 3000)
        Da, Ia = a.search(self.xq, 10, nprobe=6)
        Db, Ib = b.search(self.xq, 10, nprobe=6)
        np.testing.assert_array_equal(Ia, Ib)
        np.testing.assert_array_equal(Da, Db)

    def test_search_merges_the_shards_top_k(self):
        dirs = []
        for i, (lo, hi) in enumerate([(0, 1500), (1500, 3000)]):
            d = os.path.join(self.tmp.name, f"shard-{i}")
            quiver.build(self.xb[lo:hi], d, "IVF8_HNSW8,Flat", seed=1)
            dirs.append(d)
        D, I = qray.search(dirs, self.xq, 5, nprobe=8)
        self.assertEqual((D.shape, I.shape, D.dtype, I.dtype), ((8, 5), (8, 5), np.float32, np.int64))
        parts = [quiver.Index(d).search(self.xq, 5, nprobe=8) for d in dirs]
        allD = np.concatenate([p[0] for p in parts], axis=1)
        np.testing.assert_allclose(D, np.sort(allD, axis=1)[:, :5])
        with self.assertRaises(ValueError):
            qray.search([], self.xq, 5)


if __name__ == "__main__":
    unittest.main()
