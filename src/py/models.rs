//! `hessx.models.MLP`'s compiled half: array conversion around `core::mlp`.
//! The Python class checks dtypes and shapes first, so the arrays arriving here
//! are C-contiguous in the model's dtype (labels int64).

use std::str::FromStr;
use std::sync::Arc;

use numpy::{Element, PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::core::mlp::{Activation, GgnOp, HessianOp, Loss, Mlp, Real, Targets};
use crate::core::op::SymOp;

use super::errors::to_py;
use super::operators::{OpKind, RustOperator};

/// A cached Hessian (or Gauss–Newton) operator of a model at fixed data.
pub enum ModelOp {
    HessianF32(HessianOp<f32>),
    HessianF64(HessianOp<f64>),
    GgnF32(GgnOp<f32>),
    GgnF64(GgnOp<f64>),
}

impl ModelOp {
    pub fn as_op(&self) -> &dyn SymOp {
        match self {
            ModelOp::HessianF32(op) => op,
            ModelOp::HessianF64(op) => op,
            ModelOp::GgnF32(op) => op,
            ModelOp::GgnF64(op) => op,
        }
    }
}

#[pyclass(frozen, module = "hessx._hessx")]
pub struct MlpCore {
    mlp: Mlp,
}

fn slice<'a, T: Element>(array: &'a PyReadonlyArray1<'_, T>, name: &str) -> PyResult<&'a [T]> {
    array
        .as_slice()
        .map_err(|e| PyValueError::new_err(format!("{name} must be C-contiguous: {e}")))
}

/// Borrow (params, x, y) in the model's dtype and call `$body` with slices.
macro_rules! with_inputs {
    ($py:expr, $T:ty, $params:expr, $x:expr, $y:expr, |$p:ident, $xs:ident, $ys:ident| $body:expr) => {{
        let params: PyReadonlyArray1<'_, $T> =
            $params.extract().map_err(|_| dtype_error("params"))?;
        let x: PyReadonlyArray1<'_, $T> = flat($x)?.extract().map_err(|_| dtype_error("X"))?;
        let $p = slice(&params, "params")?;
        let $xs = slice(&x, "X")?;
        let labels;
        let values;
        let $ys = if let Ok(l) = $y.extract::<PyReadonlyArray1<'_, i64>>() {
            labels = l;
            Targets::Labels(slice(&labels, "y")?)
        } else {
            values = flat($y)?
                .extract::<PyReadonlyArray1<'_, $T>>()
                .map_err(|_| dtype_error("y"))?;
            Targets::Values(slice(&values, "y")?)
        };
        $body
    }};
}

fn dtype_error(name: &str) -> PyErr {
    PyTypeError::new_err(format!("{name} has the wrong dtype for this model"))
}

/// A C-contiguous array of any shape, viewed as 1-D.
fn flat<'py>(array: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    array.call_method1("reshape", (-1,))
}

fn is_f32(params: &Bound<'_, PyAny>) -> bool {
    params.cast::<PyArray1<f32>>().is_ok()
}

impl MlpCore {
    fn loss_t<T: Real + Element>(
        &self,
        py: Python<'_>,
        params: &Bound<'_, PyAny>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
    ) -> PyResult<f64> {
        with_inputs!(py, T, params, x, y, |p, xs, ys| {
            py.detach(|| super::pool::install(|| self.mlp.loss(p, xs, ys)))
                .map_err(to_py)
        })
    }

    fn loss_and_grad_t<'py, T: Real + Element>(
        &self,
        py: Python<'py>,
        params: &Bound<'py, PyAny>,
        x: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
    ) -> PyResult<(f64, Bound<'py, PyArray1<T>>)> {
        let grad = PyArray1::<T>::zeros(py, self.mlp.n_params(), false);
        let loss = {
            let mut g = grad.readwrite();
            let gs = g
                .as_slice_mut()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            with_inputs!(py, T, params, x, y, |p, xs, ys| {
                py.detach(|| super::pool::install(|| self.mlp.loss_and_grad(p, xs, ys, gs)))
                    .map_err(to_py)?
            })
        };
        Ok((loss, grad))
    }

    fn product_t<'py, T: Real + Element>(
        &self,
        py: Python<'py>,
        params: &Bound<'py, PyAny>,
        x: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
        v: &Bound<'py, PyAny>,
        gauss_newton: bool,
    ) -> PyResult<Bound<'py, PyArray1<T>>> {
        let v: PyReadonlyArray1<'_, T> = v.extract().map_err(|_| dtype_error("v"))?;
        let vs = slice(&v, "v")?;
        let out = PyArray1::<T>::zeros(py, self.mlp.n_params(), false);
        {
            let mut o = out.readwrite();
            let os = o
                .as_slice_mut()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            with_inputs!(py, T, params, x, y, |p, xs, ys| {
                py.detach(|| {
                    super::pool::install(|| {
                        if gauss_newton {
                            self.mlp.ggn_vp(p, xs, ys, vs, os)
                        } else {
                            self.mlp.hvp(p, xs, ys, vs, os)
                        }
                    })
                })
                .map_err(to_py)?
            })
        }
        Ok(out)
    }

    fn operator_t<T: Real + Element>(
        &self,
        py: Python<'_>,
        params: &Bound<'_, PyAny>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        gauss_newton: bool,
        wrap: impl FnOnce(Arc<crate::core::mlp::HessianState<T>>, bool) -> ModelOp,
    ) -> PyResult<RustOperator> {
        let state = with_inputs!(py, T, params, x, y, |p, xs, ys| {
            py.detach(|| super::pool::install(|| self.mlp.hessian_state(p, xs, ys)))
                .map_err(to_py)?
        });
        let n = self.mlp.n_params();
        let op = wrap(Arc::new(state), gauss_newton);
        Ok(RustOperator::new(OpKind::Model(op), n))
    }
}

#[pymethods]
impl MlpCore {
    #[new]
    fn new(sizes: Vec<usize>, activation: &str, loss: &str, bias: bool) -> PyResult<Self> {
        let activation = Activation::from_str(activation).map_err(to_py)?;
        let loss = Loss::from_str(loss).map_err(to_py)?;
        let mlp = Mlp::new(sizes, activation, loss, bias).map_err(to_py)?;
        Ok(MlpCore { mlp })
    }

    #[getter]
    fn n_params(&self) -> usize {
        self.mlp.n_params()
    }

    /// (weight offset, n_in, n_out) per layer; the bias (if any) follows W.
    fn layer_offsets(&self) -> Vec<(usize, usize, usize)> {
        self.mlp.layer_offsets()
    }

    fn init<'py>(&self, py: Python<'py>, seed: u64) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_vec(py, self.mlp.init(seed))
    }

    fn loss(
        &self,
        py: Python<'_>,
        params: &Bound<'_, PyAny>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
    ) -> PyResult<f64> {
        if is_f32(params) {
            self.loss_t::<f32>(py, params, x, y)
        } else {
            self.loss_t::<f64>(py, params, x, y)
        }
    }

    fn loss_and_grad<'py>(
        &self,
        py: Python<'py>,
        params: &Bound<'py, PyAny>,
        x: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
    ) -> PyResult<(f64, Bound<'py, PyAny>)> {
        if is_f32(params) {
            let (l, g) = self.loss_and_grad_t::<f32>(py, params, x, y)?;
            Ok((l, g.into_any()))
        } else {
            let (l, g) = self.loss_and_grad_t::<f64>(py, params, x, y)?;
            Ok((l, g.into_any()))
        }
    }

    #[pyo3(signature = (params, x, y, v, gauss_newton=false))]
    fn product<'py>(
        &self,
        py: Python<'py>,
        params: &Bound<'py, PyAny>,
        x: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
        v: &Bound<'py, PyAny>,
        gauss_newton: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        if is_f32(params) {
            Ok(self
                .product_t::<f32>(py, params, x, y, v, gauss_newton)?
                .into_any())
        } else {
            Ok(self
                .product_t::<f64>(py, params, x, y, v, gauss_newton)?
                .into_any())
        }
    }

    /// The cached Hessian (or Gauss–Newton) operator at (params, X, y).
    #[pyo3(signature = (params, x, y, gauss_newton=false))]
    fn operator(
        &self,
        py: Python<'_>,
        params: &Bound<'_, PyAny>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        gauss_newton: bool,
    ) -> PyResult<RustOperator> {
        if is_f32(params) {
            self.operator_t::<f32>(py, params, x, y, gauss_newton, |s, g| {
                if g {
                    ModelOp::GgnF32(GgnOp::new(s))
                } else {
                    ModelOp::HessianF32(HessianOp::new(s))
                }
            })
        } else {
            self.operator_t::<f64>(py, params, x, y, gauss_newton, |s, g| {
                if g {
                    ModelOp::GgnF64(GgnOp::new(s))
                } else {
                    ModelOp::HessianF64(HessianOp::new(s))
                }
            })
        }
    }
}
