"""ONNX Runtime's per-node profile of a bench model in fp32, int8 as exported (--plain-int8) and int8
(default export), interleaved in one process; prints op-type shares and the optimized graphs' node counts.

python docs/results/camvid_deploy/profile_int8.py [stdc:stdc1] [360x480] [threads 2] [runs 20]

Random weights and 19 classes as ``ladseg bench --inference``; 2 noise calibration images (speed does
not depend on the values). A node's time is its median over the runs (robust to a busy machine);
shares are of the sum of node medians.
"""

import collections
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from ladseg.bench.inference import _network
from ladseg.export import export_onnx
from ladseg.quantize import Calibration, quantize_int8

entry = sys.argv[1] if len(sys.argv) > 1 else "stdc:stdc1"
h, w = (int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "360x480").split("x"))
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
runs, warmup = (int(sys.argv[4]) if len(sys.argv) > 4 else 20), 3

tmp = Path(tempfile.mkdtemp(prefix="ladseg-profile-"))
torch.manual_seed(0)
_, model, _ = _network(entry, 19)
export_onnx(model, tmp / "fp32.onnx", size=(h, w))
gen = np.random.default_rng(0)
calibration = Calibration([gen.standard_normal((1, 3, h, w)).astype(np.float32) for _ in range(2)])
quantize_int8(tmp / "fp32.onnx", tmp / "int8_plain.onnx", calibration, rewrite=False)
quantize_int8(tmp / "fp32.onnx", tmp / "int8.onnx", calibration)

names = ["fp32", "int8_plain", "int8"]
sessions = {}
for name in names:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.force_spinning_stop", "1")  # as ladseg's sessions
    options.enable_profiling, options.profile_file_prefix = True, str(tmp / name)
    options.optimized_model_filepath = str(tmp / f"{name}.optimized.onnx")
    sessions[name] = ort.InferenceSession(
        str(tmp / f"{name}.onnx"), options, providers=["CPUExecutionProvider"]
    )
x = gen.standard_normal((1, 3, h, w)).astype(np.float32)
for _ in range(warmup + runs):
    for s in sessions.values():
        s.run(None, {"image": x})

shares = {}
for name, s in sessions.items():
    events = json.load(open(s.end_profiling()))
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[warmup:]
    times, ops = collections.defaultdict(list), {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            if any(a <= e["ts"] <= b for a, b in spans):
                times[e["name"]].append(e["dur"])
                ops[e["name"]] = e["args"]["op_name"]
    by_op = collections.Counter()
    for node, durations in times.items():
        by_op[ops[node]] += statistics.median(durations)
    total = sum(by_op.values())
    shares[name] = {op: 100 * t / total for op, t in by_op.items()}
    counts = collections.Counter(n.op_type for n in onnx.load(str(tmp / f"{name}.optimized.onnx")).graph.node)
    print(f"{name}: sum of node medians {total / 1000:.1f} ms; optimized graph {sum(counts.values())} nodes "
          f"{dict(counts.most_common())}")  # fmt: skip
print(f"\n{entry} {h}x{w}, {threads} threads, {runs} runs: % of time per op type\n")
print("| op type | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
for op in sorted(
    {op for v in shares.values() for op in v}, key=lambda o: -max(v.get(o, 0) for v in shares.values())
):
    print(f"| {op} | " + " | ".join(f"{shares[n][op]:.1f}" if op in shares[n] else "-" for n in names) + " |")
shutil.rmtree(tmp)
