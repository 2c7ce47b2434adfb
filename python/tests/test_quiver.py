"""The Python package end to end: faiss's shapes and dtypes, conversions, errors with the
library's message, add and delete, and a build from a file. Run with
`python3 -m unittest discover python/tests` after `pip install ./python`."""

import os
import tempfile
import threading
import unittest

import numpy as np

import quiver


def exact(xb, xq, k, ids=None):
    d = ((xq[:, None, :].astype(np.float64) - xb[None, :, :]) ** 2).sum(-1)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order if ids is None else ids[order]


class QuiverTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(7)
        cls.xb = rng.random((2000, 16), dtype=np.float32)
        cls.xq = rng.random((5, 16), dtype=np.float32)
        cls.tmp = tempfile.TemporaryDirectory()
        cls.flat = os.path.join(cls.tmp.name, "flat")
        report = quiver.build(cls.xb, cls.flat, "IVF8_HNSW8,Flat", seed=3)
        assert report["ntotal"] == 2000

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_search_is_shaped_like_faiss_and_exact_for_flat_lists(self):
        index = quiver.Index(self.flat)
        self.assertEqual((index.ntotal, index.d, index.metric, index.nlist), (2000, 16, "l2", 8))
        D, I = index.search(self.xq, 10, nprobe=8)
        self.assertEqual((D.shape, D.dtype, I.shape, I.dtype), ((5, 10), np.float32, (5, 10), np.int64))
        np.testing.assert_array_equal(I, exact(self.xb, self.xq, 10))
        self.assertTrue(np.all(np.diff(D, axis=1) >= 0))
        self.assertIn("IVF8_HNSW8,Flat", repr(index))

    def test_exact_coarse_search_probes_what_a_walk_over_every_centroid_does(self):
        index = quiver.Index(self.flat)
        xq = np.random.default_rng(4).random((40, 16), dtype=np.float32)
        D, I = index.search(xq, 10, nprobe=3, coarse="exact")
        D2, I2 = index.search(xq, 10, nprobe=3, ef_search=8, coarse="graph")
        np.testing.assert_array_equal(I, I2)
        np.testing.assert_array_equal(D, D2)

    def test_any_float_or_uint8_array_is_accepted(self):
        index = quiver.Index(self.flat)
        want = index.search(self.xq, 5, nprobe=8)[1]
        for xq in [self.xq.astype(np.float64), np.asfortranarray(self.xq), self.xq[0], list(self.xq)]:
            got = index.search(xq, 5, nprobe=8)[1]
            np.testing.assert_array_equal(got, want[: got.shape[0]])
        q8 = (self.xq * 255).astype(np.uint8)
        self.assertEqual(index.search(q8, 5, nprobe=8)[1].shape, (5, 5))

    def test_bad_arguments_are_value_errors_with_the_message(self):
        index = quiver.Index(self.flat)
        cases = [
            (lambda: index.search(self.xq[:, :8], 5), "dimension 8"),
            (lambda: index.search(self.xq.astype(np.complex64), 5), "dtype"),
            (lambda: index.search(self.xq, 0), "k = 0"),
            (lambda: index.search(self.xq, 5, nprobe=9), "nprobe = 9 is out of range"),
            (lambda: index.search(self.xq, 5, k_factor=2), "keeps none"),
            (lambda: index.search(self.xq, 5, coarse="brute"), "graph or exact"),
            (lambda: index.search(np.full((1, 16), np.nan, np.float32), 5), "finite"),
            (lambda: quiver.build(self.xb, os.path.join(self.tmp.name, "x"), "IVF8_HNSW8,PQ5"), "divide"),
            (lambda: quiver.build(self.xb, os.path.join(self.tmp.name, "y"), "IVF8,Flat", metric="hamming"), "metric"),
            (lambda: quiver.build(self.xb, os.path.join(self.tmp.name, "z"), "IVF8_HNSW8,Flat", nlist=3), "unknown option"),
        ]
        for f, needle in cases:
            with self.assertRaises(ValueError) as c:
                f()
            self.assertIn(needle, str(c.exception))
        with self.assertRaises(quiver.Error) as c:
            quiver.Index(os.path.join(self.tmp.name, "missing"))
        self.assertIn("does not exist", str(c.exception))
        self.assertTrue(issubclass(quiver.Error, RuntimeError))

    def test_graph_index_refuses_nprobe(self):
        g = os.path.join(self.tmp.name, "graph")
        quiver.build(self.xb, g, "HNSW16,Flat")
        index = quiver.Index(g)
        _, I = index.search(self.xq, 5, ef_search=64)
        self.assertEqual(I.shape, (5, 5))
        with self.assertRaises(ValueError):
            index.search(self.xq, 5, nprobe=4)
        with self.assertRaises(quiver.Error):
            index.add(self.xq)

    def test_add_delete_and_missing_results(self):
        d = os.path.join(self.tmp.name, "live")
        quiver.build(self.xb[:1000], d, "IVF8_HNSW8,Flat", seed=3)
        index = quiver.Index(d)
        self.assertEqual(index.add(self.xb[1000:1500]), 1500)
        self.assertEqual(index.add(self.xb[1500:], ids=np.arange(5000, 5500)), 2000)
        ids = np.concatenate([np.arange(1500), np.arange(5000, 5500)])
        _, I = index.search(self.xq, 10, nprobe=8)
        np.testing.assert_array_equal(I, exact(self.xb, self.xq, 10, ids))
        gone = I[:, 0]
        self.assertEqual(index.delete(gone), len(set(gone.tolist())))
        _, I2 = index.search(self.xq, 10, nprobe=8)
        self.assertFalse(np.isin(I2, gone).any())
        self.assertEqual(index.generation, 4)
        # One list of about 250 vectors cannot hold k = 400: the rest is -1 and +inf.
        D, I = index.search(self.xq[:1], 400, nprobe=1)
        self.assertTrue((I[0] == -1).any() and np.isinf(D[0][I[0] == -1]).all())
        with self.assertRaises(ValueError):
            index.add(self.xb[:3], ids=[1, 2])

    def test_build_from_a_file_and_searches_in_threads(self):
        path = os.path.join(self.tmp.name, "base.npy")
        np.save(path, self.xb)
        d = os.path.join(self.tmp.name, "fromfile")
        quiver.build(path, d, "IVF8_HNSW8,PQ8x4fs", memory="256MiB")
        index = quiver.Index(d, cache_bytes="16MiB")
        results = [None] * 4

        def run(i):
            results[i] = index.search(self.xq, 10, nprobe=4)[1]

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results[1:]:
            np.testing.assert_array_equal(r, results[0])


if __name__ == "__main__":
    unittest.main()
