//! Runs an ONNX model in onnxruntime, through the python of the torch venv (`PYTHON_SYS_EXECUTABLE`,
//! set by `scripts/env.sh`; `scripts/setup.sh` installs onnxruntime there). For tests here and in
//! tanren-trainer, and for tools: the library itself never calls it, so serving needs no python.
//!
//! The script (`ort_run.py`, embedded) reads stdin: u64 model length, the model, u8 input dtype
//! (0 f32, 1 u8), four u64 dims, the input; and writes stdout: u64 rank, the dims, the f32 output. All
//! little-endian. Pipes rather than temp files, so parallel tests never collide.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

const SCRIPT: &str = include_str!("ort_run.py");

/// An input batch, NCHW.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    F32(&'a [f32]),
    U8(&'a [u8]),
}

/// The python that has onnxruntime: `$PYTHON_SYS_EXECUTABLE`, else `python3`.
pub fn python() -> String {
    std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into())
}

/// The model's first output on `input` of `shape`: (dims, values). Errors carry python's stderr; a
/// missing onnxruntime says to run scripts/setup.sh.
pub fn run(model: &[u8], input: Input, shape: [usize; 4]) -> Result<(Vec<usize>, Vec<f32>), String> {
    let mut msg = Vec::with_capacity(model.len() + 64);
    msg.extend_from_slice(&(model.len() as u64).to_le_bytes());
    msg.extend_from_slice(model);
    match input {
        Input::F32(_) => msg.push(0),
        Input::U8(_) => msg.push(1),
    }
    for d in shape {
        msg.extend_from_slice(&(d as u64).to_le_bytes());
    }
    match input {
        Input::F32(x) => x.iter().for_each(|v| msg.extend_from_slice(&v.to_le_bytes())),
        Input::U8(x) => msg.extend_from_slice(x),
    }
    let py = python();
    let mut child = Command::new(&py)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {py} ({e}); run scripts/setup.sh and source scripts/env.sh"))?;
    let mut stdin = child.stdin.take().expect("piped");
    // Written from a thread so a large input cannot deadlock against python's output.
    let writer = std::thread::spawn(move || stdin.write_all(&msg));
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    let status = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = writer.join();
    if !status.status.success() {
        return Err(format!(
            "onnxruntime via {py} failed ({}): {}",
            status.status,
            String::from_utf8_lossy(&status.stderr).trim()
        ));
    }
    let u64_at = |i: usize| -> Result<usize, String> {
        out.get(i..i + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .ok_or_else(|| "onnxruntime output is truncated".to_string())
    };
    let rank = u64_at(0)?;
    let dims = (0..rank)
        .map(|i| u64_at(8 + 8 * i))
        .collect::<Result<Vec<_>, _>>()?;
    let start = 8 + 8 * rank;
    let values: Vec<f32> = out[start..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    if values.len() != dims.iter().product::<usize>() {
        return Err(format!(
            "onnxruntime returned {} values for shape {dims:?}",
            values.len()
        ));
    }
    Ok((dims, values))
}
