//! Python objects ↔ TOML and JSON values, and the argument checks shared by every function.
//!
//! Types are checked here, so that a wrong type is always a `TypeError` naming the argument,
//! and a right type with a wrong value is a `ConfigError` naming the field.

use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::errors::{invalid, misuse};

/// A JSON value as Python objects (`null` → `None`, objects → `dict`, arrays → `list`).
pub fn json_to_py(py: Python<'_>, v: &serde_json::Value) -> PyResult<Py<PyAny>> {
    Ok(match v {
        serde_json::Value::Null => py.None(),
        serde_json::Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any().unbind()
            } else if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any().unbind()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any().unbind()
            }
        }
        serde_json::Value::String(s) => PyString::new(py, s).into_any().unbind(),
        serde_json::Value::Array(a) => {
            let items = a.iter().map(|x| json_to_py(py, x)).collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any().unbind()
        }
        serde_json::Value::Object(o) => {
            let d = PyDict::new(py);
            for (k, x) in o {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any().unbind()
        }
    })
}

/// Any serializable value as Python objects, through JSON's data model (exactly what
/// `json.loads` of its JSON would give).
pub fn to_py<T: serde::Serialize>(py: Python<'_>, value: &T) -> PyResult<Py<PyAny>> {
    let v = serde_json::to_value(value).map_err(|e| crate::errors::internal(&format!("cannot serialize: {e}")))?;
    json_to_py(py, &v)
}

/// A TOML value as Python objects (datetimes become strings).
pub fn toml_to_py(py: Python<'_>, v: &toml::Value) -> PyResult<Py<PyAny>> {
    Ok(match v {
        toml::Value::String(s) => PyString::new(py, s).into_any().unbind(),
        toml::Value::Integer(i) => i.into_pyobject(py)?.into_any().unbind(),
        toml::Value::Float(f) => f.into_pyobject(py)?.into_any().unbind(),
        toml::Value::Boolean(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        toml::Value::Datetime(d) => PyString::new(py, &d.to_string()).into_any().unbind(),
        toml::Value::Array(a) => {
            let items = a.iter().map(|x| toml_to_py(py, x)).collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any().unbind()
        }
        toml::Value::Table(t) => table_to_py(py, t)?.into_any().unbind(),
    })
}

/// A TOML table as a `dict`.
pub fn table_to_py<'py>(py: Python<'py>, t: &toml::Table) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, x) in t {
        d.set_item(k, toml_to_py(py, x)?)?;
    }
    Ok(d)
}

/// A Python value as TOML: `bool`, `int`, `float`, `str`, lists/tuples and dicts with `str` keys.
/// Dict entries whose value is `None` are left out (TOML has no null). `path` names the value
/// in errors (e.g. `rsm[0].replicas`).
pub fn py_to_toml(obj: &Bound<'_, PyAny>, path: &str) -> PyResult<toml::Value> {
    let here = if path.is_empty() { "the value".to_string() } else { format!("`{path}`") };
    if obj.is_instance_of::<PyBool>() {
        return Ok(toml::Value::Boolean(obj.extract()?));
    }
    if obj.is_instance_of::<PyInt>() {
        let i: i64 = obj.extract().map_err(|_| {
            invalid(
                path,
                format!(
                    "{} does not fit a 64-bit signed integer",
                    obj.str().map(|s| s.to_string()).unwrap_or_default()
                ),
            )
        })?;
        return Ok(toml::Value::Integer(i));
    }
    if obj.is_instance_of::<PyFloat>() {
        return Ok(toml::Value::Float(obj.extract()?));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(toml::Value::String(s.to_str()?.to_owned()));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut t = toml::Table::new();
        for (k, v) in d.iter() {
            let Ok(key) = k.cast::<PyString>() else {
                return Err(PyTypeError::new_err(format!("keys of {here} must be str, not {}", type_name(&k))));
            };
            let key = key.to_str()?.to_owned();
            if v.is_none() {
                continue;
            }
            let sub = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            t.insert(key, py_to_toml(&v, &sub)?);
        }
        return Ok(toml::Value::Table(t));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut a = Vec::new();
        for (i, v) in obj.try_iter()?.enumerate() {
            a.push(py_to_toml(&v?, &format!("{path}[{i}]"))?);
        }
        return Ok(toml::Value::Array(a));
    }
    Err(PyTypeError::new_err(format!(
        "{here} must be a bool, int, float, str, list, tuple or dict (TOML values), not {}",
        type_name(obj)
    )))
}

/// The type name of `obj`, for messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".into())
}

/// A `TypeError` saying what `what` should have been.
pub fn wrong_type(what: &str, expected: &str, obj: &Bound<'_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!("{what} must be {expected}, not {}", type_name(obj)))
}

/// An integer argument in `0..=max` (`bool` is refused: it is an `int` subclass, but never
/// meant as a count). Negative or too large values are a `ConfigError` naming `field`.
pub fn uint(obj: &Bound<'_, PyAny>, field: &str, max: u64) -> PyResult<u64> {
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
        return Err(wrong_type(field, "an int", obj));
    }
    match obj.extract::<i128>() {
        Ok(v) if (0..=i128::from(max)).contains(&v) => Ok(v as u64),
        _ => Err(invalid(
            field,
            format!(
                "{} is out of range: must be an integer between 0 and {max}",
                obj.str().map(|s| s.to_string()).unwrap_or_default()
            ),
        )),
    }
}

/// A number argument (`int` or `float`, not `bool`).
pub fn number(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<f64> {
    if obj.is_instance_of::<PyBool>() || !(obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyFloat>()) {
        return Err(wrong_type(field, "a number (int or float)", obj));
    }
    obj.extract::<f64>()
}

/// A `str` argument.
pub fn string(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<String> {
    match obj.cast::<PyString>() {
        Ok(s) => Ok(s.to_str()?.to_owned()),
        Err(_) => Err(wrong_type(field, "a str", obj)),
    }
}

/// A `bool` argument.
pub fn boolean(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<bool> {
    if obj.is_instance_of::<PyBool>() { obj.extract() } else { Err(wrong_type(field, "a bool", obj)) }
}

/// A `bytes`-like argument (`bytes`, `bytearray`, `memoryview`), copied.
pub fn bytes_arg(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if obj.is_instance_of::<PyString>() {
        return Err(wrong_type(field, "bytes (encode str payloads first, e.g. text.encode())", obj));
    }
    obj.extract::<Vec<u8>>().map_err(|_| wrong_type(field, "bytes, bytearray or memoryview", obj))
}

/// A list of items given as a list/tuple, or as one comma-separated `str` (as on the command
/// line). Each item is converted by `item`.
pub fn list_or_csv<T>(
    obj: &Bound<'_, PyAny>,
    field: &str,
    mut item: impl FnMut(&Bound<'_, PyAny>, &str) -> PyResult<T>,
) -> PyResult<Vec<T>> {
    if let Ok(s) = obj.cast::<PyString>() {
        let text = s.to_str()?;
        let py = obj.py();
        return text
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(|x| item(PyString::new(py, x).as_any(), field))
            .collect();
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return obj.try_iter()?.map(|x| item(&x?, field)).collect();
    }
    Err(wrong_type(field, "a list (or a comma-separated str)", obj))
}

/// The items of a list or tuple (a bytes-like object is refused: its items would be ints).
pub fn sequence_arg<'py>(obj: &Bound<'py, PyAny>, field: &str) -> PyResult<Vec<Bound<'py, PyAny>>> {
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return obj.try_iter()?.collect();
    }
    Err(wrong_type(field, "a list or tuple", obj))
}

/// A sequence number (or other index) argument: a non-negative `int`.
pub fn seq_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!("{what} must be an int, not {}", type_name(obj))));
    }
    obj.extract::<u64>().map_err(|_| misuse(format!("{what} must be between 0 and 2**64 - 1, not {obj}")))
}

/// Where configuration text comes from.
pub enum Source {
    /// TOML text.
    Text(String),
    /// A file.
    Path(PathBuf),
}

/// A `str` holding TOML text or a file path, or an `os.PathLike`. A `str` is TOML text when it
/// contains a newline, `=` or `[` (or is empty), and a path otherwise.
pub fn text_or_path(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Source> {
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_str()?;
        if s.is_empty() || s.contains(['\n', '=', '[']) {
            return Ok(Source::Text(s.to_owned()));
        }
        return Ok(Source::Path(PathBuf::from(s)));
    }
    if obj.hasattr("__fspath__")? {
        let p: PathBuf = obj.extract().map_err(|_| wrong_type(what, "a str or os.PathLike", obj))?;
        return Ok(Source::Path(p));
    }
    Err(wrong_type(what, "TOML text, a path (str or os.PathLike)", obj))
}
