//! Spectrum entry points (SLQ, trace estimation, exact inertia counts):
//! argument conversion only; the work is in core.
//!
//! An SLQ run is kept as an opaque [`SlqResult`] so that counts with their
//! error bars and densities are computed in Rust from the full quadrature
//! data (Jacobi matrices and Ritz residuals), never re-derived in Python.
//! `from_arrays` rebuilds one from its arrays, which is how results computed
//! on other machines (probe ranges, see `SlqParams::first_probe`) are joined.

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::core::krylov::slq::{count_fraction, density, slq, ProbeKind, SlqOutput, SlqParams};
use crate::core::krylov::trace::{hutchinson_samples, hutchpp};
use crate::core::sparse::inertia::{banded_counts, inertia, symbolic_nnz};

use super::errors::to_py;
use super::monitor::run_detached;
use super::operators::RustOperator;

fn parse_probe(kind: &str) -> PyResult<ProbeKind> {
    match kind {
        "rademacher" => Ok(ProbeKind::Rademacher),
        "gaussian" => Ok(ProbeKind::Gaussian),
        other => Err(PyValueError::new_err(format!(
            "probe must be 'rademacher' or 'gaussian', got {other:?}"
        ))),
    }
}

/// The per-probe quadrature data of one SLQ run (see `core::krylov::slq::SlqOutput`).
#[pyclass(frozen, module = "hessx._hessx")]
pub struct SlqResult {
    out: SlqOutput,
}

fn to_list<'py>(py: Python<'py>, rows: &[Vec<f64>]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, rows.iter().map(|r| PyArray1::from_slice(py, r)))
}

fn rows_from(arrays: Vec<PyReadonlyArray1<'_, f64>>, what: &str) -> PyResult<Vec<Vec<f64>>> {
    arrays
        .iter()
        .enumerate()
        .map(|(p, a)| {
            a.as_slice()
                .map(<[f64]>::to_vec)
                .map_err(|e| PyValueError::new_err(format!("{what}[{p}]: {e}")))
        })
        .collect()
}

#[pymethods]
impl SlqResult {
    /// Rebuild a result from its per-probe arrays (as returned by the getters).
    #[staticmethod]
    #[pyo3(signature = (n, nodes, weights, alpha, beta, residuals))]
    fn from_arrays(
        n: usize,
        nodes: Vec<PyReadonlyArray1<'_, f64>>,
        weights: Vec<PyReadonlyArray1<'_, f64>>,
        alpha: Vec<PyReadonlyArray1<'_, f64>>,
        beta: Vec<PyReadonlyArray1<'_, f64>>,
        residuals: Vec<PyReadonlyArray1<'_, f64>>,
    ) -> PyResult<Self> {
        let out = SlqOutput {
            n,
            nodes: rows_from(nodes, "nodes")?,
            weights: rows_from(weights, "weights")?,
            alpha: rows_from(alpha, "alpha")?,
            beta: rows_from(beta, "beta")?,
            residuals: rows_from(residuals, "residuals")?,
        };
        let n_probes = out.nodes.len();
        if n_probes == 0 {
            return Err(PyValueError::new_err(
                "nodes: an SLQ result needs at least one probe",
            ));
        }
        for (what, rows) in [
            ("weights", &out.weights),
            ("alpha", &out.alpha),
            ("beta", &out.beta),
            ("residuals", &out.residuals),
        ] {
            if rows.len() != n_probes {
                return Err(PyValueError::new_err(format!(
                    "{what} has {} probes, nodes has {n_probes}",
                    rows.len()
                )));
            }
            for (p, row) in rows.iter().enumerate() {
                if row.len() != out.nodes[p].len() {
                    return Err(PyValueError::new_err(format!(
                        "{what}[{p}] has length {}, nodes[{p}] has {}",
                        row.len(),
                        out.nodes[p].len()
                    )));
                }
            }
        }
        for (p, row) in out.nodes.iter().enumerate() {
            if row.is_empty() || row.len() > n {
                return Err(PyValueError::new_err(format!(
                    "nodes[{p}] must have between 1 and n = {n} entries, got {}",
                    row.len()
                )));
            }
        }
        for (what, rows) in [
            ("nodes", &out.nodes),
            ("weights", &out.weights),
            ("alpha", &out.alpha),
            ("beta", &out.beta),
            ("residuals", &out.residuals),
        ] {
            for (p, row) in rows.iter().enumerate() {
                if let Some(i) = row.iter().position(|x| !x.is_finite()) {
                    return Err(PyValueError::new_err(format!(
                        "{what}[{p}] contains NaN or Inf (first at index {i})"
                    )));
                }
            }
        }
        Ok(SlqResult { out })
    }

    #[getter]
    fn n(&self) -> usize {
        self.out.n
    }

    #[getter]
    fn n_probes(&self) -> usize {
        self.out.nodes.len()
    }

    /// Gauss nodes per probe (ascending).
    #[getter]
    fn nodes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        to_list(py, &self.out.nodes)
    }

    /// Gauss weights per probe (each row sums to 1).
    #[getter]
    fn weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        to_list(py, &self.out.weights)
    }

    /// Diagonals of the Jacobi matrices.
    #[getter]
    fn alpha<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        to_list(py, &self.out.alpha)
    }

    /// Off-diagonals of the Jacobi matrices (last entry: the final residual norm).
    #[getter]
    fn beta<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        to_list(py, &self.out.beta)
    }

    /// Ritz residual norms per node.
    #[getter]
    fn residuals<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        to_list(py, &self.out.residuals)
    }

    /// The fraction of eigenvalues in `[lo, hi]` with its honest error bar: a
    /// dict with `value`, `stderr`, `sampling_stderr`, `quadrature_halfwidth`,
    /// `lower`, `upper`.
    fn count_fraction<'py>(
        &self,
        py: Python<'py>,
        lo: f64,
        hi: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let out = &self.out;
        let e = py
            .detach(|| super::pool::install(|| count_fraction(out, lo, hi)))
            .map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("value", e.value)?;
        d.set_item("stderr", e.stderr)?;
        d.set_item("sampling_stderr", e.sampling_stderr)?;
        d.set_item("quadrature_halfwidth", e.quadrature_halfwidth)?;
        d.set_item("lower", e.lower)?;
        d.set_item("upper", e.upper)?;
        Ok(d)
    }

    /// The Gaussian-smoothed density (width `sigma`) on `grid`.
    fn density<'py>(
        &self,
        py: Python<'py>,
        grid: PyReadonlyArray1<'py, f64>,
        sigma: f64,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let grid = grid
            .as_slice()
            .map_err(|e| PyValueError::new_err(format!("grid: {e}")))?;
        let out = &self.out;
        let values = py
            .detach(|| super::pool::install(|| density(out, grid, sigma)))
            .map_err(to_py)?;
        Ok(PyArray1::from_vec(py, values))
    }
}

/// Stochastic Lanczos quadrature of probes `first_probe..first_probe + n_probes`.
#[pyfunction]
#[pyo3(signature = (op, n_probes, n_steps, seed, probe, first_probe, progress))]
#[allow(clippy::too_many_arguments)]
pub fn slq_run(
    py: Python<'_>,
    op: &RustOperator,
    n_probes: usize,
    n_steps: usize,
    seed: u64,
    probe: &str,
    first_probe: usize,
    progress: bool,
) -> PyResult<SlqResult> {
    let params = SlqParams {
        n_probes,
        n_steps,
        seed,
        probe: parse_probe(probe)?,
        first_probe,
    };
    let out = op.run_detached(py, progress, |sym, monitor| slq(sym, &params, monitor))?;
    Ok(SlqResult { out })
}

/// Hutchinson's per-probe values `z_iᵀ A z_i` for probes `first_probe..first_probe + n_probes`.
#[pyfunction]
#[pyo3(signature = (op, n_probes, seed, first_probe, progress))]
pub fn hutchinson_run<'py>(
    py: Python<'py>,
    op: &RustOperator,
    n_probes: usize,
    seed: u64,
    first_probe: usize,
    progress: bool,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let values = op.run_detached(py, progress, |sym, monitor| {
        hutchinson_samples(sym, first_probe, n_probes, seed, monitor)
    })?;
    Ok(PyArray1::from_vec(py, values))
}

/// Hutch++ with a budget of `n_matvecs` products: `(estimate, stderr)`.
#[pyfunction]
#[pyo3(signature = (op, n_matvecs, seed, progress))]
pub fn hutchpp_run(
    py: Python<'_>,
    op: &RustOperator,
    n_matvecs: usize,
    seed: u64,
    progress: bool,
) -> PyResult<(f64, f64)> {
    let t = op.run_detached(py, progress, |sym, monitor| {
        hutchpp(sym, n_matvecs, seed, monitor)
    })?;
    Ok((t.estimate, t.stderr))
}

/// The three CSR arrays of a symmetric matrix, borrowed read-only.
enum Borrowed<'py> {
    I32F64(
        PyReadonlyArray1<'py, i32>,
        PyReadonlyArray1<'py, i32>,
        PyReadonlyArray1<'py, f64>,
    ),
    I32F32(
        PyReadonlyArray1<'py, i32>,
        PyReadonlyArray1<'py, i32>,
        PyReadonlyArray1<'py, f32>,
    ),
    I64F64(
        PyReadonlyArray1<'py, i64>,
        PyReadonlyArray1<'py, i64>,
        PyReadonlyArray1<'py, f64>,
    ),
    I64F32(
        PyReadonlyArray1<'py, i64>,
        PyReadonlyArray1<'py, i64>,
        PyReadonlyArray1<'py, f32>,
    ),
}

fn borrow<'py, T: numpy::Element>(
    array: &Bound<'py, PyAny>,
    what: &str,
) -> Option<PyResult<PyReadonlyArray1<'py, T>>> {
    let typed = array.cast::<PyArray1<T>>().ok()?;
    Some(
        typed
            .try_readonly()
            .map_err(|e| PyValueError::new_err(format!("{what}: {e}"))),
    )
}

impl<'py> Borrowed<'py> {
    fn new(
        indptr: &Bound<'py, PyAny>,
        indices: &Bound<'py, PyAny>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Self> {
        let wrong = || {
            PyTypeError::new_err(
                "A: CSR data must be float32 or float64 and indptr/indices both int32 or both int64",
            )
        };
        if let (Some(p), Some(i)) = (
            borrow::<i32>(indptr, "A.indptr"),
            borrow::<i32>(indices, "A.indices"),
        ) {
            let (p, i) = (p?, i?);
            if let Some(d) = borrow::<f64>(data, "A.data") {
                return Ok(Borrowed::I32F64(p, i, d?));
            }
            if let Some(d) = borrow::<f32>(data, "A.data") {
                return Ok(Borrowed::I32F32(p, i, d?));
            }
            return Err(wrong());
        }
        if let (Some(p), Some(i)) = (
            borrow::<i64>(indptr, "A.indptr"),
            borrow::<i64>(indices, "A.indices"),
        ) {
            let (p, i) = (p?, i?);
            if let Some(d) = borrow::<f64>(data, "A.data") {
                return Ok(Borrowed::I64F64(p, i, d?));
            }
            if let Some(d) = borrow::<f32>(data, "A.data") {
                return Ok(Borrowed::I64F32(p, i, d?));
            }
        }
        Err(wrong())
    }
}

fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, what: &str) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|e| PyValueError::new_err(format!("{what} must be contiguous: {e}")))
}

/// Call the generic core function `$f(n, indptr, indices, data, $($arg),*)` on
/// whichever index/value types the arrays have, with the GIL released.
macro_rules! on_csr {
    ($py:expr, $borrowed:expr, |$p:ident, $i:ident, $d:ident| $body:expr) => {
        match &$borrowed {
            Borrowed::I32F64(p, i, d) => on_csr!(@one $py, p, i, d, |$p, $i, $d| $body),
            Borrowed::I32F32(p, i, d) => on_csr!(@one $py, p, i, d, |$p, $i, $d| $body),
            Borrowed::I64F64(p, i, d) => on_csr!(@one $py, p, i, d, |$p, $i, $d| $body),
            Borrowed::I64F32(p, i, d) => on_csr!(@one $py, p, i, d, |$p, $i, $d| $body),
        }
    };
    (@one $py:expr, $pa:expr, $ia:expr, $da:expr, |$p:ident, $i:ident, $d:ident| $body:expr) => {{
        let ($p, $i, $d) = (
            slice($pa, "A.indptr")?,
            slice($ia, "A.indices")?,
            slice($da, "A.data")?,
        );
        run_detached($py, false, false, |_monitor, _caller| $body)?
    }};
}

/// Exact counts of eigenvalues below −tol, within [−tol, tol] and above tol
/// of the symmetric CSR matrix (full storage), by Sylvester's law of inertia.
#[pyfunction]
#[pyo3(signature = (n, indptr, indices, data, tol))]
pub fn inertia_counts<'py>(
    py: Python<'py>,
    n: usize,
    indptr: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    tol: f64,
) -> PyResult<(usize, usize, usize)> {
    let borrowed = Borrowed::new(indptr, indices, data)?;
    let c = on_csr!(py, borrowed, |p, i, d| banded_counts(n, p, i, d, tol));
    Ok((c.below, c.within, c.above))
}

/// Inertia `(negative, zero, positive)` of `A − shift·I`.
#[pyfunction]
#[pyo3(signature = (n, indptr, indices, data, shift))]
pub fn inertia_of<'py>(
    py: Python<'py>,
    n: usize,
    indptr: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    shift: f64,
) -> PyResult<(usize, usize, usize)> {
    let borrowed = Borrowed::new(indptr, indices, data)?;
    let c = on_csr!(py, borrowed, |p, i, d| inertia(n, p, i, d, shift));
    Ok((c.negative, c.zero, c.positive))
}

/// The LDLᵀ factor the symbolic analysis predicts: `(nnz_l, bytes)`.
#[pyfunction]
#[pyo3(signature = (n, indptr, indices, data))]
pub fn factor_size<'py>(
    py: Python<'py>,
    n: usize,
    indptr: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
) -> PyResult<(usize, usize)> {
    let borrowed = Borrowed::new(indptr, indices, data)?;
    let s = on_csr!(py, borrowed, |p, i, d| symbolic_nnz(n, p, i, d));
    Ok((s.nnz_l, s.bytes))
}
