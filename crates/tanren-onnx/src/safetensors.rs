//! Reads (and, for tests and tools, writes) the safetensors files tch's `VarStore::save` produces: an
//! 8-byte little-endian header length, a JSON header `{name: {dtype, shape, data_offsets}}`, then the
//! raw little-endian data. The format is small enough that a parser here beats a dependency, and it lets
//! every refusal name the tensor at fault.

use crate::OnnxError;
use std::collections::BTreeMap;

/// One F32 tensor: its shape and values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Every tensor in the file by name. Only F32 is accepted: that is what the trainer saves, and a model
/// saved in another precision should be converted knowingly, not silently.
pub fn parse(bytes: &[u8]) -> Result<BTreeMap<String, Tensor>, OnnxError> {
    let bad = |m: String| OnnxError::Safetensors(m);
    if bytes.len() < 8 {
        return Err(bad(format!("{} bytes is too short for a header", bytes.len())));
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let data_start = 8u64
        .checked_add(header_len)
        .filter(|&end| end <= bytes.len() as u64)
        .ok_or_else(|| {
            bad(format!(
                "header length {header_len} runs past the end of the file"
            ))
        })? as usize;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..data_start]).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let entries = header
        .as_object()
        .ok_or_else(|| bad("header is not a JSON object".into()))?;
    let data = &bytes[data_start..];
    let mut out = BTreeMap::new();
    for (name, e) in entries {
        if name == "__metadata__" {
            continue;
        }
        let dtype = e["dtype"].as_str().unwrap_or("?");
        if dtype != "F32" {
            return Err(OnnxError::WrongDtype {
                name: name.clone(),
                dtype: dtype.to_string(),
            });
        }
        let shape: Vec<usize> = e["shape"]
            .as_array()
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
            .ok_or_else(|| bad(format!("{name}: shape is not a list of sizes")))?;
        let offsets: Vec<usize> = e["data_offsets"]
            .as_array()
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
            .filter(|o: &Vec<usize>| o.len() == 2)
            .ok_or_else(|| bad(format!("{name}: data_offsets is not [begin, end]")))?;
        let (begin, end) = (offsets[0], offsets[1]);
        let numel = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| bad(format!("{name}: shape {shape:?} overflows")))?;
        if begin > end || end > data.len() || end - begin != numel.saturating_mul(4) {
            return Err(bad(format!(
                "{name}: data_offsets [{begin}, {end}] do not hold {numel} f32 values in {} data bytes",
                data.len()
            )));
        }
        let values = data[begin..end]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        out.insert(name.clone(), Tensor { shape, data: values });
    }
    Ok(out)
}

/// Writes tensors in the same layout `parse` reads (and tch writes): sorted by name, packed data.
pub fn write(tensors: &BTreeMap<String, Tensor>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, t) in tensors {
        let end = offset + 4 * t.data.len();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": t.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut h = serde_json::to_vec(&header).expect("a JSON map serialises");
    // The format asks for the data to start 8-byte aligned; pad the header with spaces.
    while !(8 + h.len()).is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for t in tensors.values() {
        for v in &t.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}
