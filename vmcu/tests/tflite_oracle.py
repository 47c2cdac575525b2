"""Runs a .tflite model with TFLite's own reference kernels (op resolver BUILTIN_REF).

usage: tflite_oracle.py MODEL IN.bin OUT.bin [IN.bin OUT.bin ...]
Each IN holds the raw bytes of the model's input tensor; OUT receives the raw output bytes.
The conformance test compares these bytes with `vmcu run`.
"""
import sys

import numpy as np
import tflite_runtime.interpreter as tfl


def main(argv):
    if len(argv) < 4 or len(argv) % 2 != 0:
        print(__doc__, file=sys.stderr)
        return 2
    interpreter = tfl.Interpreter(
        model_path=argv[1],
        experimental_op_resolver_type=tfl.OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    for in_path, out_path in zip(argv[2::2], argv[3::2]):
        data = np.fromfile(in_path, dtype=inp["dtype"]).reshape(inp["shape"])
        interpreter.set_tensor(inp["index"], data)
        interpreter.invoke()
        interpreter.get_tensor(out["index"]).tofile(out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
