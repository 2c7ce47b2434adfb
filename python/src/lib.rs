//! `quiver._quiver`: the extension module under the `quiver` Python package. It takes
//! C-contiguous float32 rows (the package's Python layer converts whatever numpy array it is
//! given) and returns numpy arrays shaped as faiss's; the GIL is released while the library
//! builds, adds or searches.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

pyo3::create_exception!(
    quiver,
    Error,
    PyRuntimeError,
    "An error of the quiver library that is not about the arguments: I/O, a damaged index, an unsupported operation."
);

/// The library's error as a Python exception: ValueError for what the caller passed, quiver.Error
/// for the rest, with the library's message either way.
fn to_py(e: quiver::Error) -> PyErr {
    use quiver::Error as E;
    match e {
        E::InvalidParameter(_)
        | E::OutOfRange { .. }
        | E::DimensionMismatch { .. }
        | E::NonFiniteQuery { .. }
        | E::Spec(_)
        | E::TrainingSetTooSmall { .. }
        | E::BudgetTooSmall { .. }
        | E::Input(_) => PyValueError::new_err(e.to_string()),
        _ => Error::new_err(e.to_string()),
    }
}

fn rows<'a>(x: &'a PyReadonlyArray2<'_, f32>) -> PyResult<(&'a [f32], usize)> {
    let d = x.shape()[1];
    let data = x.as_slice().map_err(|_| PyValueError::new_err("the array must be C-contiguous float32"))?;
    Ok((data, d))
}

/// A search's (distances, ids), as numpy arrays.
type Found<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>);

/// An open index (`quiver.Index` wraps it).
#[pyclass(module = "quiver._quiver", name = "Index")]
struct PyIndex {
    dir: PathBuf,
    index: RwLock<Arc<quiver::Index>>,
}

impl PyIndex {
    fn current(&self) -> Arc<quiver::Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[pymethods]
impl PyIndex {
    #[new]
    #[pyo3(signature = (path, cache_bytes = 0))]
    fn new(py: Python<'_>, path: PathBuf, cache_bytes: u64) -> PyResult<Self> {
        let opts = quiver::OpenOptions { cache_bytes, ..Default::default() };
        let index = py.allow_threads(|| quiver::Index::open_with(&path, opts)).map_err(to_py)?;
        Ok(PyIndex { dir: path, index: RwLock::new(Arc::new(index)) })
    }

    /// (distances float32 (n, k), ids int64 (n, k)); -1 ids (and +inf / -inf distances) where
    /// fewer than k were found.
    #[pyo3(signature = (xq, k, nprobe = None, ef_search = None, k_factor = None, coarse = None))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        xq: PyReadonlyArray2<'py, f32>,
        k: usize,
        nprobe: Option<usize>,
        ef_search: Option<usize>,
        k_factor: Option<usize>,
        coarse: Option<&str>,
    ) -> PyResult<Found<'py>> {
        let index = self.current();
        let info = index.info();
        let (data, d) = rows(&xq)?;
        if d != info.dim {
            return Err(PyValueError::new_err(format!(
                "queries have dimension {d}, the index holds {}-dimensional vectors",
                info.dim
            )));
        }
        if info.is_graph() && nprobe.is_some() {
            return Err(PyValueError::new_err(format!(
                "nprobe applies to IVF indexes; {} searches its graph with ef_search alone",
                info.factory
            )));
        }
        if k_factor.is_some() && info.refine.is_none() {
            return Err(PyValueError::new_err(format!(
                "k_factor re-ranks with full vectors, and this index ({}) keeps none: build it with ',RFlat' at the end of the factory string",
                info.factory
            )));
        }
        let coarse: quiver::CoarseSearch = match coarse {
            None => Default::default(),
            Some(_) if info.is_graph() => {
                return Err(PyValueError::new_err(format!(
                    "coarse applies to IVF indexes, which have lists to choose; {} has none",
                    info.factory
                )))
            }
            Some(c) => c.parse().map_err(PyValueError::new_err)?,
        };
        let n = data.len() / d.max(1);
        let p = quiver::SearchParams {
            k,
            nprobe: nprobe.unwrap_or(1),
            ef_search: ef_search.unwrap_or(info.ef_search),
            k_factor: k_factor.unwrap_or(1),
            filter: None,
            coarse,
        };
        let found = py.allow_threads(|| index.search(data, &p)).map_err(to_py)?;
        let dist = Array2::from_shape_vec((n, k), found.distances).map_err(|e| Error::new_err(e.to_string()))?;
        let ids = Array2::from_shape_vec((n, k), found.ids).map_err(|e| Error::new_err(e.to_string()))?;
        Ok((dist.into_pyarray(py), ids.into_pyarray(py)))
    }

    /// Adds rows (a new generation), then moves to it. Returns the new ntotal.
    #[pyo3(signature = (xb, ids = None))]
    fn add(
        &self,
        py: Python<'_>,
        xb: PyReadonlyArray2<'_, f32>,
        ids: Option<PyReadonlyArray1<'_, i64>>,
    ) -> PyResult<u64> {
        let (data, d) = rows(&xb)?;
        let ids: Option<Vec<i64>> = ids.map(|a| a.as_array().to_vec());
        let source = quiver::SliceSource { data, dim: d };
        let report = py
            .allow_threads(|| {
                quiver::add_vectors(&self.dir, &source, ids.as_deref(), &Default::default(), &quiver::NoProgress)
            })
            .map_err(to_py)?;
        self.reload(py)?;
        Ok(report.ntotal)
    }

    /// Deletes ids (a new generation), then moves to it. Returns how many were deleted.
    fn delete(&self, py: Python<'_>, ids: PyReadonlyArray1<'_, i64>) -> PyResult<u64> {
        let ids: Vec<i64> = ids.as_array().to_vec();
        let report = py.allow_threads(|| quiver::delete_ids(&self.dir, &ids)).map_err(to_py)?;
        self.reload(py)?;
        Ok(report.vectors)
    }

    /// Moves to the newest generation; returns whether there was a newer one.
    fn reload(&self, py: Python<'_>) -> PyResult<bool> {
        let current = self.current();
        let Some(fresh) = py.allow_threads(|| current.reopened()).map_err(to_py)? else { return Ok(false) };
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        Ok(true)
    }

    #[getter]
    fn ntotal(&self) -> u64 {
        self.current().info().ntotal
    }

    #[getter]
    fn d(&self) -> usize {
        self.current().info().dim
    }

    #[getter]
    fn metric(&self) -> String {
        self.current().info().metric.to_string()
    }

    #[getter]
    fn factory(&self) -> String {
        self.current().info().factory.clone()
    }

    #[getter]
    fn nlist(&self) -> usize {
        self.current().info().nlist
    }

    #[getter]
    fn generation(&self) -> u64 {
        self.current().info().generation
    }
}

/// The build options both `build` and `train` take.
fn build_options(
    factory: String,
    metric: &str,
    memory: Option<u64>,
    train_size: Option<usize>,
    (niter, ef_construction, ef_search, seed): (usize, usize, usize, u64),
) -> PyResult<quiver::BuildOptions> {
    let metric: quiver::Metric = metric.parse().map_err(PyValueError::new_err)?;
    Ok(quiver::BuildOptions {
        factory,
        metric,
        train_size,
        niter,
        ef_construction,
        ef_search,
        seed,
        memory_budget: memory,
        ..Default::default()
    })
}

/// Builds an index from rows in memory (`data`) or a vector file (`path`); returns the build
/// report as a dict.
#[pyfunction]
#[pyo3(signature = (index_dir, factory, metric, data = None, path = None, memory = None, train_size = None, niter = 10, ef_construction = 40, ef_search = 16, seed = 1234, chunk_size = 262_144))]
#[allow(clippy::too_many_arguments)]
fn build<'py>(
    py: Python<'py>,
    index_dir: PathBuf,
    factory: String,
    metric: &str,
    data: Option<PyReadonlyArray2<'py, f32>>,
    path: Option<PathBuf>,
    memory: Option<u64>,
    train_size: Option<usize>,
    niter: usize,
    ef_construction: usize,
    ef_search: usize,
    seed: u64,
    chunk_size: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let opts = quiver::BuildOptions {
        chunk_size,
        ..build_options(factory, metric, memory, train_size, (niter, ef_construction, ef_search, seed))?
    };
    let report = match (&data, &path) {
        (Some(x), None) => {
            let (rows, d) = rows(x)?;
            let source = quiver::SliceSource { data: rows, dim: d };
            py.allow_threads(|| quiver::build_index(&source, &index_dir, &opts, &quiver::NoProgress))
        }
        (None, Some(p)) => py.allow_threads(|| {
            let source = quiver::VectorFile::open(p)?;
            quiver::build_index(&source, &index_dir, &opts, &quiver::NoProgress)
        }),
        _ => return Err(PyValueError::new_err("give the vectors as an array or a file path, not both")),
    }
    .map_err(to_py)?;
    let out = PyDict::new(py);
    out.set_item("ntotal", report.ntotal)?;
    out.set_item("dim", report.dim)?;
    out.set_item("nlist", report.nlist)?;
    out.set_item("train_size", report.train_size)?;
    out.set_item("index_bytes", report.index_bytes)?;
    out.set_item("segments", report.segments)?;
    out.set_item("build_s", report.total_s)?;
    Ok(out)
}

/// Trains an IVF index in `index_dir` on a sample of the files `paths` (read as one dataset,
/// as a build of them would) and commits it with no vectors: the first step of a sharded
/// build.
#[pyfunction]
#[pyo3(signature = (index_dir, factory, metric, paths, memory = None, train_size = None, niter = 10, ef_construction = 40, ef_search = 16, seed = 1234))]
#[allow(clippy::too_many_arguments)]
fn train(
    py: Python<'_>,
    index_dir: PathBuf,
    factory: String,
    metric: &str,
    paths: Vec<PathBuf>,
    memory: Option<u64>,
    train_size: Option<usize>,
    niter: usize,
    ef_construction: usize,
    ef_search: usize,
    seed: u64,
) -> PyResult<()> {
    let opts = build_options(factory, metric, memory, train_size, (niter, ef_construction, ef_search, seed))?;
    py.allow_threads(|| {
        let source = quiver::VectorFiles::open(&paths)?;
        quiver::train_index(&source, &index_dir, &opts, &quiver::NoProgress)
    })
    .map_err(to_py)
}

/// Encodes the vector file `path` (ids from `first_id`) into shard `shard` of the trained
/// index in `index_dir`; returns the shard's area for `commit_shards`.
#[pyfunction]
#[pyo3(signature = (index_dir, path, first_id, shard, memory = None))]
fn prepare_shard(
    py: Python<'_>,
    index_dir: PathBuf,
    path: PathBuf,
    first_id: u64,
    shard: u32,
    memory: Option<u64>,
) -> PyResult<PathBuf> {
    let opts = quiver::ChangeOptions { memory_budget: memory, ..Default::default() };
    py.allow_threads(|| {
        let source = quiver::VectorFile::open(&path)?;
        quiver::prepare_shard(&index_dir, &source, first_id, shard, &opts, &quiver::NoProgress)
    })
    .map_err(to_py)
}

/// Commits prepared shards as one generation; returns it.
#[pyfunction]
fn commit_shards(py: Python<'_>, index_dir: PathBuf, areas: Vec<PathBuf>) -> PyResult<u64> {
    let r = py.allow_threads(|| quiver::commit_shards(&index_dir, &areas)).map_err(to_py)?;
    Ok(r.generation.unwrap_or(0))
}

/// Rows in a vector file (read from its header).
#[pyfunction]
fn file_rows(path: PathBuf) -> PyResult<usize> {
    Ok(quiver::VectorFile::open(&path).map_err(|e| to_py(e.into()))?.len())
}

#[pymodule]
fn _quiver(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyIndex>()?;
    m.add_function(wrap_pyfunction!(build, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(prepare_shard, m)?)?;
    m.add_function(wrap_pyfunction!(commit_shards, m)?)?;
    m.add_function(wrap_pyfunction!(file_rows, m)?)?;
    m.add("Error", m.py().get_type::<Error>())?;
    Ok(())
}
