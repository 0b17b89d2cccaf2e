# Runs one ONNX model in onnxruntime (CPU) on one input batch: for tanren-onnx's `ort` module, which
# feeds this script on stdin and reads stdout; see src/ort.rs for the byte layout.
import struct
import sys

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:
    sys.stderr.write(f"onnxruntime is not importable by {sys.executable} ({e}); run scripts/setup.sh\n")
    sys.exit(3)

data = sys.stdin.buffer.read()
(model_len,) = struct.unpack_from("<Q", data, 0)
pos = 8
model = data[pos : pos + model_len]
pos += model_len
(dtype,) = struct.unpack_from("<B", data, pos)
pos += 1
shape = struct.unpack_from("<4Q", data, pos)
pos += 32
x = np.frombuffer(data[pos:], dtype=np.float32 if dtype == 0 else np.uint8).reshape(shape)

opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.log_severity_level = 3
sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
(y,) = sess.run(None, {sess.get_inputs()[0].name: x})
y = np.ascontiguousarray(y, dtype=np.float32)
out = sys.stdout.buffer
out.write(struct.pack("<Q", y.ndim))
out.write(struct.pack(f"<{y.ndim}Q", *y.shape))
out.write(y.tobytes())
out.flush()
